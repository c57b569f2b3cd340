"""``kdrun ship PATH...``: read the runs, print the students' table and the frontier, write
frontier.png / .md / .csv, and name the student to ship with the command that exports it."""

import csv
import io
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from kdrun.console import console, err_console, plain
from kdrun.errors import KdrunConfigError
from kdrun.files import write_atomic
from kdrun.report.cells import FORMULA_STARTS, md_cell
from kdrun.report.frontier import COSTS, check_cost
from kdrun.report.runs import find
from kdrun.report.ship import Shipping, analyse, recommendation, rows


def collect(paths: list[Path]) -> list[dict[str, Any]]:
    """Every run under each path (a run folder, a sweep, any folder of runs), each folder once."""
    runs: dict[str, dict[str, Any]] = {}
    for path in paths:
        for run in find(path):
            runs.setdefault(str(Path(run["run_dir"]).resolve()), run)
    if not any(run.get("status") == "ok" for run in runs.values()):
        where = " ".join(map(str, paths))
        raise KdrunConfigError("PATH", where, "holds no finished run (a results.json with status ok)")
    return list(runs.values())


def note(shipping: Shipping) -> str:
    """What the table's numbers are, in one paragraph."""
    threads = " / ".join(sorted({str(t) for t in shipping.threads.values() if t is not None})) or "-"
    return (
        "Top-1 on the test split, mean ± std over the seeds (n); scratch: the same student trained "
        "without the teacher (same seeds); gain: distilled − scratch, paired by seed (points, "
        "mean ± std). A student runs in PyTorch; its '· onnx' and '· int8' twins are its exported "
        "files (fp32 and int8 ONNX) in ONNX Runtime, their top-1 from the export's parity check. "
        "MB: PyTorch weights or the ONNX file. "
        f"ms: median latency per call on the CPU with {threads} thread(s) at batch 1 and 64, compared "
        "only between figures measured with the same batch and thread count. "
        f"★: on the frontier of top-1 against {COSTS[shipping.cost]}."
    )


def table(shipping: Shipping, title: str) -> Table:
    head, body = rows(shipping)
    out = Table(title=title)
    for i, column in enumerate(head):
        out.add_column(column, justify="left" if i == 0 else "right", no_wrap=True)
    for cells in body:
        out.add_row(*(Text(plain(c)) for c in cells))  # labels come from configs: no markup read
    return out


def markdown(shipping: Shipping) -> str:
    head, body = rows(shipping)
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    lines += ["| " + " | ".join(md_cell(c) for c in cells) + " |" for cells in body]
    return "\n".join([*lines, "", note(shipping), ""])


def _csv_cell(text: str) -> str:
    """A cell a spreadsheet will not run as a formula; a signed number stays a number."""
    number = text[:1] in "+-" and text[1:2].isdigit()
    return "'" + text if text.startswith(FORMULA_STARTS) and not number else text


def csv_text(shipping: Shipping) -> str:
    head, body = rows(shipping)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(head)
    writer.writerows([["" if c == "-" else _csv_cell(c) for c in cells] for cells in body])  # - : none
    return buffer.getvalue()


def ship(
    paths: list[Path],
    cost: str = "latency1",
    min_accuracy: float | None = None,
    max_latency_ms: float | None = None,
    out: Path | None = None,
) -> Shipping:
    """Print the table, the frontier and the recommendation; write frontier.png/.md/.csv to ``out``
    (default: the one folder given, or the current folder). ``min_accuracy`` in percent."""
    from kdrun.report import frontier_plot  # matplotlib only when something is drawn

    check_cost(cost)
    runs = collect(paths)
    floor = None if min_accuracy is None else min_accuracy / 100
    shipping = analyse(runs, cost, floor, max_latency_ms)
    out = out or (paths[0] if len(paths) == 1 and paths[0].is_dir() else Path("."))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KdrunConfigError(
            "--out", str(out), f"cannot create the folder: {err.strerror or err}"
        ) from None
    console.print(table(shipping, title=f"kdrun ship: {len(runs)} runs, cost {cost}"))
    console.print(note(shipping), markup=False)
    for line in shipping.notes:
        err_console.print(f"note: {plain(line)}", markup=False, soft_wrap=True)
    frontier_plot.save(shipping, out / "frontier.png")
    write_atomic(out / "frontier.md", markdown(shipping))
    write_atomic(out / "frontier.csv", csv_text(shipping))
    front = ", ".join(shipping.front) or "none (no student has this cost measured)"
    console.print(f"frontier ({cost}): {plain(front)}", markup=False)
    console.print(
        f"wrote {out / 'frontier.png'}, {out / 'frontier.md'}, {out / 'frontier.csv'}", markup=False
    )
    return shipping


def print_recommendation(
    shipping: Shipping, min_accuracy: float | None, max_latency_ms: float | None
) -> bool:
    """The one line and the export command; False (and a line saying so) when no student fits."""
    found = recommendation(shipping)
    if found is None:
        asked = " and ".join(
            text
            for text in (
                None if min_accuracy is None else f"top-1 >= {min_accuracy:g}%",
                None
                if max_latency_ms is None
                else f"latency <= {max_latency_ms:g} ms @{shipping.budget_batch}",
            )
            if text
        )
        err_console.print(f"no student reaches {asked}", markup=False, soft_wrap=True)
        return False
    line, command = found
    console.print(plain(line), markup=False, soft_wrap=True)
    console.print(f"next: {plain(command)}", markup=False, soft_wrap=True)
    return True
