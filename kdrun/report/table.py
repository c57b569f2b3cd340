"""The rich table printed at the end of a run."""

from typing import Any

from rich.table import Table

ROLES = (("teacher", "teacher"), ("baseline", "scratch student"), ("student", "distilled student"))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"


def _signed_pts(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.2f}"


def _count(value: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return str(value)


def results_table(results: dict[str, Any]) -> Table:
    """Teacher, scratch student and distilled student side by side, with the deltas."""
    batches = list(results["student"]["latency_ms"])
    has_top5 = "top5" in results["student"]
    table = Table(title=f"kdrun: {results['strategy']['name']} on {results['data']['name']}")
    table.add_column("model")
    table.add_column("arch")
    table.add_column("top-1 %", justify="right")
    table.add_column("Δ vs scratch", justify="right")
    if has_top5:
        table.add_column("top-5 %", justify="right")
    for column in ("params", "FLOPs/img", "MB"):
        table.add_column(column, justify="right")
    for batch in batches:
        table.add_column(f"ms @{batch.removeprefix('batch')}", justify="right")
    base = results["baseline"]["top1"]
    for role, label in ROLES:
        row = results[role]
        cells = [label, row["name"], _pct(row["top1"]), _signed_pts(row["top1"] - base)]
        if has_top5:
            cells.append(_pct(row["top5"]))
        cells += [_count(row["params"]), _count(row["flops"]), f"{row['size_mb']:.2f}"]
        cells += [f"{row['latency_ms'][b]:.3f}" for b in batches]
        table.add_row(*cells)
    d = results["deltas"]
    speed = ", ".join(f"{v:.1f}x @{k.removeprefix('batch')}" for k, v in d["latency_speedup"].items() if v)
    table.caption = (
        f"KD gain {_signed_pts(d['kd_gain_top1'])} pts over scratch · "
        f"gap to teacher {_signed_pts(d['gap_to_teacher_top1'])} pts · "
        f"params x{d['params_ratio']:.3f} · FLOPs x{d['flops_ratio']:.3f} · faster: {speed} · "
        f"seed {results['seed']}, last-epoch test accuracy on {results['data']['test']} images"
    )
    return table
