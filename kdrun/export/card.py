"""MODEL_CARD.md: what the exported student is, how good, how fast, and how to rebuild it.

Every number comes from results.json (written by the run and by the export), never re-typed.
"""

import math
import shlex
from pathlib import Path
from typing import Any

from kdrun.report.table import human_count


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _pts(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def _ms(row: dict[str, Any], batch: str) -> str:
    value = row.get("latency_ms", {}).get(batch)
    iqr = row.get("latency_iqr_ms", {}).get(batch)
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" (IQR {iqr:.3f})" if iqr is not None else "")


def _weights(weights: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in (weights or {}).items()) or "-"


def _device_line(device: dict[str, Any] | None) -> list[str]:
    """The device, precision and determinism the run trained with (runs before they were recorded: none)."""
    if not device:
        return []
    count = f" x{device['devices']}" if device.get("devices", 1) > 1 else ""
    return [
        f"- Trained on: {device['accelerator']}{count} ({device['name']}), precision "
        f"`{device['precision']}`, deterministic `{str(device['deterministic']).lower()}`, "
        f"torch {device['torch']}."
    ]


def reproduce_command(run_dir: Path) -> str:
    """``kdrun train`` with the run's own overrides (Hydra's ``.hydra/overrides.yaml``)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    overrides: list[str] = []
    if path.is_file():
        from omegaconf import OmegaConf

        overrides = [str(o) for o in OmegaConf.load(path)]
    return " ".join(["kdrun train", *(shlex.quote(o) for o in overrides)])


def model_card(
    results: dict[str, Any],
    run_dir: Path,
    normalization: dict[str, list[float]] | None,
    written_by: str = "kdrun export",
) -> str:
    """The card's Markdown text; ``written_by`` is the command that exported the student."""
    cfg, data, student = results["config"], results["data"], results["student"]
    teacher, baseline, d = results.get("teacher"), results["baseline"], results["deltas"]
    export = results["export"]
    batches = list(student["latency_ms"])
    n_test = data["test"]
    stderr = math.sqrt(student["top1"] * (1 - student["top1"]) / n_test)
    teacher_name = teacher["name"] if teacher else "none (the strategy has no teacher row)"
    channels, height, width = data["input_shape"]
    student_train = data.get("student_train", data["train"])
    optimizer = cfg["optim"]["optimizer"]
    lines = [
        f"# {student['name']} distilled on {data['name']}",
        "",
        f"Written by `{written_by}` (kdrun {results['kdrun_version']}) from the run `{run_dir.name}`, "
        f"started {results['started_at']}. Every number below is read from that run's results.json.",
        "",
        "## Model",
        "",
        f"- Architecture: `{student['name']}` — {human_count(student['params'])} parameters, "
        f"{human_count(student['flops'])} FLOPs per image, {student['size_mb']:.2f} MB of weights.",
        f"- Input: float32 `(N, {channels}, {height}, {width})`, N free (dynamic batch): "
        f"{channels} channel(s) of {height} × {width} pixels, pixel values scaled to [0, 1] "
        "(an 8-bit value divided by 255)"
        + (
            ", then each channel normalised as `(x - mean) / std` with the training split's "
            f"mean {[round(m, 4) for m in normalization['mean']]} and "
            f"std {[round(s, 4) for s in normalization['std']]}."
            if normalization
            else ", not normalised further."
        ),
        f"- Output: `logits`, `(N, {data['num_classes']})`; the predicted class is the arg-max.",
        "- Files: "
        + ", ".join(
            f"`{Path(e['path']).name}` ({e['format']})" for e in export["formats"].values() if e["path"]
        )
        + ", and `student.safetensors` (PyTorch weights) in the run folder.",
        "",
        "## Training",
        "",
        f"- Data: `{data['name']}`, {data['train']} train / {data['val']} val / {n_test} test images "
        f"(fingerprint `{data['fingerprint']}`); the student trained on {student_train}.",
        f"- Teacher: `{teacher_name}`"
        + (f" ({teacher['source']}), top-1 {_pct(teacher['top1'])}%." if teacher else "."),
        f"- Strategy: `{results['strategy']['name']}`, T = {cfg['T']:g}, α = {cfg['alpha']:g}, "
        f"loss weights {_weights(results['strategy'].get('weights'))}.",
        f"- Budget: {cfg['student']['epochs']} epochs, optimizer `{optimizer.get('_target_', '?')}`"
        f" (lr {optimizer.get('lr')}), batch size {cfg['dataset']['batch_size']}, "
        f"seed {results['seed']} (one seed; the scratch student shares its init and batch order).",
        *_device_line(results.get("device")),
        "",
        f"## Accuracy (test split, {n_test} images, last epoch)",
        "",
        "| model | arch | top-1 % | Δ vs scratch (pts) | params | FLOPs/img |",
        "|---|---|---:|---:|---:|---:|",
    ]
    rows = ([("teacher", teacher)] if teacher else []) + [
        ("scratch student", baseline),
        ("distilled student", student),
    ]
    for label, row in rows:
        # As on the console: a student against the scratch student, a model trained in the run
        # against its own scratch twin, a loaded or cached teacher against nothing.
        twin = row.get("scratch", {}).get("top1", baseline["top1"] if label.endswith("student") else None)
        gain = None if twin is None else row["top1"] - twin
        lines.append(
            f"| {label} | {row['name']} | {_pct(row['top1'])} | {_pts(gain)} | "
            f"{human_count(row['params'])} | {human_count(row['flops'])} |"
        )
    made = {name: e for name, e in export["formats"].items() if "parity" in e}
    for name, entry in made.items():
        lines.append(
            f"| exported student ({name}) | {student['name']} | {_pct(entry['parity']['top1'])} | "
            f"{_pts(entry['parity']['top1'] - baseline['top1'])} | {human_count(student['params'])} | "
            f"{human_count(student['flops'])} |"
        )
    lines += [
        "",
        f"KD gain {_pts(d['kd_gain_top1'])} pts over the scratch student"
        + (
            f", gap to the teacher {_pts(d['gap_to_teacher_top1'])} pts, params ×{d['params_ratio']:.3f}"
            if teacher
            else ""
        )
        + f". One seed: the binomial standard error of the student's top-1 on {n_test} images is "
        f"±{100 * stderr:.2f} pts, so a gain smaller than about twice that is not evidence by itself "
        "(`kdrun regress` runs recipes over several seeds).",
        "",
        "## Parity (PyTorch vs export, every test image)",
        "",
        "| format | max abs logit diff | top-1 agreement | allowed |",
        "|---|---:|---:|---|",
    ]
    for name, entry in made.items():
        p = entry["parity"]
        allowed = (
            f"top-1 drop ≤ {export['int8']['max_int8_drop']:g} pts"
            if name.endswith("_int8")
            else f"≤ {export['atol']:g}, ≥ {export['min_top1_agreement']:g}"
        )
        lines.append(f"| {name} | {p['max_abs_diff']:.2e} | {p['top1_agreement']:.4f} | {allowed} |")
    lines += [
        "",
        f"## Latency (CPU, {export['threads']} thread(s), ms per call, median (IQR), measured side by side)",
        "",
        "| runtime | " + " | ".join(f"batch {b.removeprefix('batch')}" for b in batches) + " |",
        "|---|" + "---:|" * len(batches),
        "| PyTorch (eager) | " + " | ".join(_ms(export["pytorch"], b) for b in batches) + " |",
    ]
    for name, entry in made.items():
        runtime = "TorchScript" if name == "torchscript" else "ONNX Runtime"
        lines.append(f"| {runtime} ({name}) | " + " | ".join(_ms(entry, b) for b in batches) + " |")
    if teacher:
        lines.append(
            "| teacher, PyTorch (at training time) | " + " | ".join(_ms(teacher, b) for b in batches) + " |"
        )
    lines += _int8_lines(export, batches)
    formats = " ".join(f"--format {f}" for f in export["formats"])
    if export.get("int8", {}).get("method") == "ptq":
        int8 = export["int8"]
        formats += (
            f" --calibration-images {int8['calibration_images']} --calibration-method "
            f"{int8['calibration_method']} --max-int8-drop {int8['max_int8_drop']:g}"
        )
    lines += [
        "",
        "## Reproduce",
        "",
        "```",
        reproduce_command(run_dir),
        f"kdrun export <run dir> {formats}",
        "```",
        "",
        "On CPU the same config and seed give the same numbers (`trainer.deterministic`, true on CPU); "
        "on a GPU (deterministic `warn`) they are close, not equal; latency depends on the machine.",
        "",
    ]
    return "\n".join(lines)


def _int8_lines(export: dict[str, Any], batches: list[str]) -> list[str]:
    """The int8 student next to the fp32 one: accuracy, size, latency, speed-ups."""
    entries = {name: e for name, e in export["formats"].items() if name.endswith("_int8")}
    if not entries:
        return []
    int8 = export["int8"]
    at = [b.removeprefix("batch") for b in batches]
    if int8["method"] == "ptq":
        how = (
            "static post-training quantisation",
            f"Quantised by ONNX Runtime's tools: {int8['quant_format']} format, int8 weights "
            f"{'per output channel' if int8['per_channel'] else 'per tensor'}, uint8 activations with "
            f"ranges calibrated ({int8['calibration_method']}) on the first {int8['calibration_images']} "
            "training images.",
        )
    else:
        how = (
            "quantisation-aware distillation",
            "Fine-tuned with fake int8 quantisation while distilling from the teacher "
            f"(`strategy={int8['method']}`), exported as {int8['quant_format']} with the learned "
            "ranges (int8 weights per output channel). The fp32 student is the report's "
            "`fp32_student` row (its latency in PyTorch).",
        )
    lines = [
        "",
        f"## int8 student (ONNX Runtime, {how[0]})",
        "",
        f"{how[1]} Top-1 on the same test images as the fp32 student; latency in the same "
        f"process, {export['threads']} thread(s).",
        "",
        "| model | top-1 % | Δ vs fp32 student (pts) | MB | "
        + " | ".join(f"ms @{b}" for b in at)
        + " | "
        + " | ".join(f"speed-up vs fp32 ONNX Runtime @{b}" for b in at)
        + " | "
        + " | ".join(f"speed-up vs PyTorch @{b}" for b in at)
        + " |",
        "|---|" + "---:|" * (3 + 3 * len(at)),
    ]
    fp32 = export["formats"].get("onnx")
    if fp32 and "parity" in fp32:
        lines.append(
            f"| student (fp32, ONNX Runtime) | {_pct(fp32['parity']['top1'])} | "
            f"{_pts(fp32['parity']['top1'] - fp32['parity']['top1_pytorch'])} | {fp32['file_mb']:.2f} | "
            + " | ".join(f"{fp32['latency_ms'][b]:.3f}" for b in batches)
            + " | "
            + " | ".join("1.00" for _ in batches)
            + " | "
            + " | ".join(f"{export['pytorch']['latency_ms'][b] / fp32['latency_ms'][b]:.2f}" for b in batches)
            + " |"
        )
    for entry in entries.values():
        if "parity" not in entry:
            lines.append(f"| student (int8) | not produced: {entry['error']} |")
            continue
        lines.append(
            f"| student (int8) | {_pct(entry['parity']['top1'])} | {_pts(entry['top1_delta'])} | "
            f"{entry['file_mb']:.2f} | "
            + " | ".join(f"{entry['latency_ms'][b]:.3f}" for b in batches)
            + " | "
            + " | ".join(
                f"{entry['speedup']['onnx'][b]:.2f}" if entry["speedup"]["onnx"] else "-" for b in batches
            )
            + " | "
            + " | ".join(f"{entry['speedup']['pytorch'][b]:.2f}" for b in batches)
            + " |"
        )
    return lines
