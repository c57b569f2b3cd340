"""MODEL_CARD.md: what the exported student is, how good, how fast, and how to rebuild it.

Every number comes from results.json (written by the run and by the export), never re-typed.
"""

import math
import shlex
from pathlib import Path
from typing import Any

from kdrun.export.card_int8 import int8_lines
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
        from kdrun.config.user_yaml import load_config

        overrides = [str(o) for o in load_config(path, "run_dir")]
    return " ".join(["kdrun train", *(shlex.quote(o) for o in overrides)])


def model_card(
    results: dict[str, Any],
    run_dir: Path,
    normalization: dict[str, list[float]] | None,
    written_by: str = "kdrun export",
) -> str:
    """The card's Markdown text; ``written_by`` is the command that exported the student."""
    student, data = results["student"], results["data"]
    batches = list(student["latency_ms"])
    made = {name: e for name, e in results["export"]["formats"].items() if "parity" in e}
    lines = [
        f"# {student['name']} distilled on {data['name']}",
        "",
        f"Written by `{written_by}` (kdrun {results['kdrun_version']}) from the run `{run_dir.name}`, "
        f"started {results['started_at']}. Every number below is read from that run's results.json.",
        *_model_lines(results, normalization),
        *_training_lines(results),
        *_accuracy_lines(results, made),
        *_parity_lines(results["export"], made),
        *_latency_lines(results, made, batches),
        *int8_lines(results["export"], batches),
        *_reproduce_lines(results["export"], run_dir),
    ]
    return "\n".join(lines)


def _model_lines(results: dict[str, Any], normalization: dict[str, list[float]] | None) -> list[str]:
    """What the exported student is: architecture, input, output, files."""
    data, student = results["data"], results["student"]
    channels, height, width = data["input_shape"]
    files = ", ".join(
        f"`{Path(e['path']).name}` ({e['format']})"
        for e in results["export"]["formats"].values()
        if e["path"]
    )
    return [
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
        f"- Files: {files}, and `student.safetensors` (PyTorch weights) in the run folder.",
    ]


def _training_lines(results: dict[str, Any]) -> list[str]:
    """Data, teacher, strategy, budget and device of the run."""
    cfg, data, teacher = results["config"], results["data"], results.get("teacher")
    teacher_name = teacher["name"] if teacher else "none (the strategy has no teacher row)"
    optimizer = cfg["optim"]["optimizer"]
    return [
        "",
        "## Training",
        "",
        f"- Data: `{data['name']}`, {data['train']} train / {data['val']} val / {data['test']} test images "
        f"(fingerprint `{data['fingerprint']}`); the student trained on "
        f"{data.get('student_train', data['train'])}.",
        f"- Teacher: `{teacher_name}`"
        + (f" ({teacher['source']}), top-1 {_pct(teacher['top1'])}%." if teacher else "."),
        f"- Strategy: `{results['strategy']['name']}`, T = {cfg['T']:g}, α = {cfg['alpha']:g}, "
        f"loss weights {_weights(results['strategy'].get('weights'))}.",
        f"- Budget: {cfg['student']['epochs']} epochs, optimizer `{optimizer.get('_target_', '?')}`"
        f" (lr {optimizer.get('lr')}), batch size {cfg['dataset']['batch_size']}, "
        f"seed {results['seed']} (one seed; the scratch student shares its init and batch order).",
        *_device_line(results.get("device")),
    ]


def _accuracy_lines(results: dict[str, Any], made: dict[str, dict[str, Any]]) -> list[str]:
    """Test top-1 of teacher, scratch, distilled and exported students, then the gain's caption."""
    teacher, baseline, student = results.get("teacher"), results["baseline"], results["student"]
    n_test, d = results["data"]["test"], results["deltas"]
    lines = [
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
    for name, entry in made.items():
        lines.append(
            f"| exported student ({name}) | {student['name']} | {_pct(entry['parity']['top1'])} | "
            f"{_pts(entry['parity']['top1'] - baseline['top1'])} | {human_count(student['params'])} | "
            f"{human_count(student['flops'])} |"
        )
    gap = f", gap to the teacher {_pts(d['gap_to_teacher_top1'])} pts, params ×{d['params_ratio']:.3g}"
    lines += [
        "",
        f"KD gain {_pts(d['kd_gain_top1'])} pts over the scratch student" + (gap if teacher else ""),
    ]
    if d.get("kd_gain_top1_se") is not None:  # paired, as the results table: the images one model gets right
        lines[-1] += (
            f". One seed: the gain's paired standard error on the {n_test} test images is "
            f"±{100 * d['kd_gain_top1_se']:.2f} pts (McNemar p {d['kd_gain_test']['p_value']:.2g}), so a "
            "gain smaller than about twice that is not evidence by itself "
            "(`kdrun regress` runs recipes over several seeds)."
        )
    else:
        stderr = math.sqrt(student["top1"] * (1 - student["top1"]) / n_test)
        lines[-1] += (
            f". One seed: the student's top-1 on {n_test} images has an SE of ±{100 * stderr:.2f} pts."
        )
    return lines


def _parity_lines(export: dict[str, Any], made: dict[str, dict[str, Any]]) -> list[str]:
    """Each export against the PyTorch student on every test image, with its allowed bounds."""
    lines = [
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
    return lines


def _latency_lines(results: dict[str, Any], made: dict[str, dict[str, Any]], batches: list[str]) -> list[str]:
    """Latency of PyTorch, each export and the teacher, per batch size."""
    export, teacher = results["export"], results.get("teacher")
    lines = [
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
    return lines


def _reproduce_lines(export: dict[str, Any], run_dir: Path) -> list[str]:
    """The commands that train the run again and export it with the same options."""
    formats = " ".join(f"--format {f}" for f in export["formats"])
    if export.get("int8", {}).get("method") == "ptq":
        int8 = export["int8"]
        formats += (
            f" --calibration-images {int8['calibration_images']} --calibration-method "
            f"{int8['calibration_method']} --max-int8-drop {int8['max_int8_drop']:g}"
        )
    return [
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
