"""The console's export table: parity and latency of each format next to PyTorch's."""

from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text


def export_table(section: dict[str, Any]) -> Table:
    """Parity and latency of each export next to PyTorch's."""
    batches = list(section["pytorch"]["latency_ms"])
    table = Table(title=f"export: parity on the test split, latency on CPU ({section['threads']} thread(s))")
    for column in ("runtime", "file", "MB", "max |Δ logit|", "top-1 agree", "top-1 %"):
        table.add_column(column, justify="left" if column in ("runtime", "file") else "right")
    for b in batches:
        table.add_column(f"ms @{b.removeprefix('batch')}", justify="right")
        table.add_column(f"speed-up @{b.removeprefix('batch')}", justify="right")
    torch_ms = section["pytorch"]["latency_ms"]
    table.add_row(
        "pytorch",
        "student.safetensors",
        "-",
        "-",
        "-",
        "-",
        *[c for b in batches for c in (f"{torch_ms[b]:.3f}", "1.00")],
    )
    for name, e in section["formats"].items():
        label = Text.assemble(name, ("" if e["status"] == "ok" else " (failed)", "red"))
        if "parity" not in e:  # the file could not be made
            table.add_row(label, *["-"] * (5 + 2 * len(batches)))
            continue
        p = e["parity"]
        table.add_row(
            label,
            Path(e["path"]).name,
            f"{e['file_mb']:.2f}",
            f"{p['max_abs_diff']:.1e}",
            f"{p['top1_agreement']:.4f}",
            f"{100 * p['top1']:.2f}",
            *[
                c
                for b in batches
                for c in (f"{e['latency_ms'][b]:.3f}", f"{torch_ms[b] / e['latency_ms'][b]:.2f}")
            ],
        )
    return table
