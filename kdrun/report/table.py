"""The rich table printed at the end of a run."""

from typing import Any

from rich.table import Table


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _signed_pts(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def human_count(value: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)


def _latency(row: dict[str, Any], batch: str) -> str:
    iqr = row.get("latency_iqr_ms", {}).get(batch)
    median = f"{row['latency_ms'][batch]:.3f}"
    return median if iqr is None else f"{median} ({iqr:.3f})"


def _label(role: str) -> str:
    kind, _, number = role.rpartition("_")
    return f"{kind} {number}" if number.isdigit() else role


def int8_caption(entry: dict[str, Any]) -> str:
    """One line: the int8 student against the fp32 one (accuracy, size, speed-ups)."""
    if "parity" not in entry:
        return f"int8: {entry['error']}"
    speed, batches = entry["speedup"], list(entry["latency_ms"])

    def ratios(by_batch: dict[str, float] | None) -> str:
        if by_batch is None:
            return "-"
        return ", ".join(f"{by_batch[b]:.2f}x @{b.removeprefix('batch')}" for b in batches)

    size = "" if entry["size_ratio"] is None else f" · file x{entry['size_ratio']:.2f}"
    return (
        f"int8: top-1 {100 * entry['top1_delta']:+.2f} pts vs the fp32 student{size}"
        f" · faster than fp32 ONNX Runtime: {ratios(speed['onnx'])}"
        f" · than PyTorch: {ratios(speed['pytorch'])}"
    )


def results_table(results: dict[str, Any]) -> Table:
    """Teacher(s), other models the strategy trained, scratch and distilled student, with deltas."""
    batches = list(results["student"]["latency_ms"])
    has_top5 = "top5" in results["student"]
    # A run trained on a GPU also measured latency there: both are shown, each labelled.
    gpu = results["student"].get("device")
    table = Table(title=f"kdrun: {results['strategy']['name']} on {results['data']['name']}")
    table.add_column("model")
    table.add_column("arch")
    table.add_column("source")
    table.add_column("top-1 %", justify="right")
    table.add_column("Δ vs scratch", justify="right")
    if has_top5:
        table.add_column("top-5 %", justify="right")
    for column in ("params", "FLOPs/img", "MB"):
        table.add_column(column, justify="right")
    for batch in batches:  # "(IQR)" only where some row has one (a few-block timing has none)
        spread = any(
            (row or {}).get("latency_iqr_ms", {}).get(batch) is not None for row in _all_rows(results)
        )
        name = f"{'cpu ' if gpu else ''}ms @{batch.removeprefix('batch')}{' (IQR)' if spread else ''}"
        table.add_column(name, justify="right")
    for batch in batches if gpu else []:
        table.add_column(f"{gpu} ms @{batch.removeprefix('batch')}", justify="right")
    base = results["baseline"]["top1"]
    rows = [("teacher", results["teacher"])] if results["teacher"] else []
    rows += [(_label(role), row) for role, row in results.get("extra_models", {}).items()]
    rows += [("scratch student", results["baseline"]), ("distilled student", results["student"])]
    for label, row in rows:
        # A model trained in this run is compared with its own scratch twin, when it has one.
        twin = row.get("scratch", {}).get("top1", base if label.endswith("student") else None)
        gain = None if twin is None else row["top1"] - twin
        cells = [label, row["name"], row["source"], _pct(row["top1"]), _signed_pts(gain)]
        cells += [_pct(row.get("top5"))] if has_top5 else []
        cells += [human_count(row["params"]), human_count(row["flops"]), f"{row['size_mb']:.2f}"]
        cells += [_latency(row, b) for b in batches]
        if gpu:
            on_gpu = row.get("device_latency_ms", {})
            cells += [f"{on_gpu[b]:.3f}" if b in on_gpu else "-" for b in batches]
        table.add_row(*cells)
    for cells in _export_rows(results, has_top5, bool(gpu)):
        table.add_row(*cells)
    table.caption = _caption(results)
    return table


def _export_rows(results: dict[str, Any], has_top5: bool, gpu: bool) -> list[list[str]]:
    """A row per exported file, run in its own runtime: accuracy from the parity check, its own
    latency (an int8 file that could not be made is recorded, not a row)."""
    student, base = results["student"], results["baseline"]["top1"]
    batches = list(student["latency_ms"])
    out = []
    for name, entry in results.get("export", {}).get("formats", {}).items():
        if "parity" not in entry:
            continue
        label = "student (int8)" if name.endswith("_int8") else f"student ({name})"
        cells = [label, student["name"], "export", _pct(entry["parity"]["top1"])]
        cells.append(_signed_pts(entry["parity"]["top1"] - base))
        if has_top5:
            cells.append("-")
        cells += [human_count(student["params"]), human_count(student["flops"]), f"{entry['file_mb']:.2f}"]
        cells += [_latency(entry, b) for b in batches]
        cells += ["-" for _ in batches] if gpu else []  # exported files run on the CPU
        out.append(cells)
    return out


def _noise(d: dict[str, Any]) -> str:
    """`` ± SE (p …)`` of the KD gain over the test images; empty for results without it."""
    if d.get("kd_gain_top1_se") is None:
        return ""
    return f" ± {100 * d['kd_gain_top1_se']:.2f} (test-set SE, McNemar p {d['kd_gain_test']['p_value']:.2g})"


def _ratio(x: float) -> str:
    """Three significant digits: 0.241, and 0.000412 (not 0.000) for a student thousands of times smaller."""
    return f"{x:.3g}"


def _all_rows(results: dict[str, Any]) -> list[dict[str, Any] | None]:
    return [
        results.get("teacher"),
        results["baseline"],
        results["student"],
        *results.get("extra_models", {}).values(),
    ]


def _caption(results: dict[str, Any]) -> str:
    """KD gain, gap to the teacher, ratios, speed-ups, the run's seed; a line per int8 file."""
    d = results["deltas"]
    caption = f"KD gain {_signed_pts(d['kd_gain_top1'])}{_noise(d)} pts over scratch"
    if results["teacher"]:
        speed = ", ".join(
            f"{v:.1f}x @{k.removeprefix('batch')}" for k, v in d["latency_speedup"].items() if v
        )
        caption += (
            f" · gap to teacher {_signed_pts(d['gap_to_teacher_top1'])} pts · "
            f"params x{_ratio(d['params_ratio'])} · FLOPs x{_ratio(d['flops_ratio'])}"
        )
        if speed:  # only between different architectures
            caption += f" · faster: {speed}"
    caption += (
        f" · seed {results['seed']}, last-epoch test accuracy on {results['data']['test']} images"
        " · latency: median (IQR) of one measurement per architecture"
    )
    for name, entry in results.get("export", {}).get("formats", {}).items():
        if name.endswith("_int8"):
            caption += "\n" + int8_caption(entry)
    return caption
