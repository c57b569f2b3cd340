"""`kdrun report DIR`: find the runs, print the table, write summary.csv/.md and heatmap.png."""

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from kdrun.console import console, err_console, plain, styled
from kdrun.errors import KdrunConfigError
from kdrun.files import write_atomic
from kdrun.report import curves
from kdrun.report import html as report_html
from kdrun.report.cells import number_text
from kdrun.report.summary import (
    Point,
    aggregate,
    duplicate_seeds,
    extra_columns,
    find_runs,
    heatmap,
    is_temperature_sweep,
    rows,
    write_csv,
    write_markdown,
)

METRICS = ("gain", "top1")


def _pm(mean: float | None, std: float | None, signed: bool = False) -> str:
    if mean is None:
        return "-"
    text = f"{100 * mean:+.2f}" if signed else f"{100 * mean:.2f}"
    return text if std is None else f"{text} ± {100 * std:.2f}"


def summary_table(table: list[dict[str, Any]], title: str) -> Table:
    out = Table(title=plain(title))
    extra = extra_columns(table)  # the config keys that differ between the rows
    for column in ("strategy", "teacher → student", "T", "α", *extra, "seeds", "n"):
        out.add_column(plain(column), justify="right" if column in ("T", "α", "n") else "left")
    for column in ("top-1 %", "gain (pts)", "params", "ms @1", "failed"):
        out.add_column(column, justify="right")
    for row in table:
        latency = row["latency_ms_batch1"]
        cells = (
            row["strategy"],
            f"{row['teacher']} → {row['student']}",
            number_text(row["T"]),
            number_text(row["alpha"]),
            *[row[k] for k in extra],
            row["seeds"] or "-",
            row["n"],
            _pm(row["top1_mean"], row["top1_std"]),
            _pm(row["gain_mean"], row["gain_std"], signed=True),
            row["params"] or "-",
            "-" if latency is None else f"{latency:.3f}",
            row["failed"] or "",
        )
        out.add_row(*map(plain, cells))
    return out


def _run_results(root: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(run dir, results) of every readable results.json under ``root``, for curves and the page."""
    found = []
    for path in sorted(root.rglob("results.json")):
        try:
            results = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(results, dict) and "config" in results:
            found.append((path.parent, results))
    return found


def report(root: Path, metric: str = "gain", html: bool = False) -> dict[str, Any]:
    """Summarise every run under ``root``; return what was found and written.

    Writes summary.csv/.md, heatmap.png (T x alpha grids), curves.png and, with ``html``, a
    self-contained report.html.
    """
    if metric not in METRICS:
        raise KdrunConfigError("--metric", metric, f"allowed: {', '.join(METRICS)}")
    if not root.is_dir():
        raise KdrunConfigError("DIR", str(root), "is not a folder")
    records, warnings = find_runs(root)
    for warning in warnings:
        err_console.print(styled("warning:", "yellow", f" {warning}"), soft_wrap=True)
    if not records:
        raise KdrunConfigError("DIR", str(root), "holds no results.json (run `kdrun train` first)")
    points = aggregate(records)
    _warn_duplicate_seeds(points)
    table = rows(points)
    failed = sum(row["failed"] for row in table)
    note = (
        f"{len(records)} runs ({failed} failed) under {root}; mean ± std over seeds of last-epoch "
        "test top-1; gain = distilled − scratch student (same seed), in points."
    )
    runs = _run_results(root)
    written = _write_files(root, table, note, metric, runs)
    shipping = _frontier(root, runs)
    written += [root / "frontier.png"] if shipping else []
    summary = summary_table(table, title=f"kdrun report: {root}")
    if html:
        written.append(_write_html(root, summary, note, written, runs, shipping))
    console.print(summary)
    console.print(plain(note))
    if extra := extra_columns(table):
        console.print(plain(f"rows differ in: {', '.join(extra)} (besides the columns above)"))
    for problem in (run for point in points for run in point.failed):
        console.print(plain(f"failed: {problem['run_dir']}: {problem['error']}"))
    console.print(plain("wrote " + ", ".join(str(p) for p in written)))
    return {
        "runs": len(records),
        "failed": failed,
        "skipped": len(warnings),
        "written": written,
        "rows": table,
    }


def _warn_duplicate_seeds(points: list[Point]) -> None:
    """A seed run twice in one experiment point is counted twice: say so."""
    for point in points:
        if seeds := duplicate_seeds(point):
            dirs = [r["run_dir"] for r in point.runs + point.failed if r["seed"] in seeds]
            err_console.print(
                styled(
                    "warning:",
                    "yellow",
                    f" seed {', '.join(map(str, seeds))} appears more than once in one "
                    f"experiment point (counted each time): {', '.join(dirs)}",
                ),
                soft_wrap=True,
            )


def _write_files(
    root: Path, table: list[dict[str, Any]], note: str, metric: str, runs: list[tuple[Path, dict[str, Any]]]
) -> list[Path]:
    """summary.csv and summary.md, the heatmap of a T x alpha grid, the curves; the paths written."""
    write_csv(table, root / "summary.csv")
    write_markdown(table, root / "summary.md", note)
    written = [root / "summary.csv", root / "summary.md"]
    if is_temperature_sweep(table):
        heatmap(table, root / "heatmap.png", metric)
        written.append(root / "heatmap.png")
    drawn = curves.drawable(runs)
    if drawn:
        curves.plot(drawn, root / "curves.png")
        written.append(root / "curves.png")
    return written


def _frontier(root: Path, runs: list[tuple[Path, dict[str, Any]]]) -> Any:
    """frontier.png when the runs hold more than one student architecture (``kdrun ship``'s
    figure, on CPU latency at batch 1); the analysis, or None."""
    from kdrun.report import frontier_plot
    from kdrun.report.family import architectures
    from kdrun.report.ship import analyse

    records = [{**results, "run_dir": str(run_dir)} for run_dir, results in runs]
    if architectures(records) < 2:
        return None
    shipping = analyse(records)
    frontier_plot.save(shipping, root / "frontier.png")
    return shipping


def _write_html(
    root: Path,
    summary: Table,
    note: str,
    written: list[Path],
    runs: list[tuple[Path, dict[str, Any]]],
    shipping: Any = None,
) -> Path:
    """report.html: the summary table, the images written, the frontier, each run's config; its path."""
    images = {
        name: root / file
        for name, file in (("T × α heatmap", "heatmap.png"), ("Curves", "curves.png"))
        if root / file in written
    }
    header = [str(column.header) for column in summary.columns]
    cells = [[str(c) for c in column.cells] for column in summary.columns]
    sections = []
    if shipping is not None:
        from kdrun.report.ship import rows
        from kdrun.report.ship_command import note as ship_note

        head, body = rows(shipping)
        sections.append(
            report_html.section(
                "Which student to ship", head, body, ship_note(shipping), root / "frontier.png"
            )
        )
    page = report_html.render(
        f"kdrun report: {root.name}",
        header,
        [list(r) for r in zip(*cells, strict=True)],
        note,
        images,
        runs,
        sections,
    )
    write_atomic(root / "report.html", page)
    return root / "report.html"
