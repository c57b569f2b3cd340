"""Figures in the docs are generated from recorded runs, never typed.

A record (``docs/records/<name>.json``) is a trimmed copy of what a run wrote (one results.json,
or several for seeds) with the date, the commit, the machine and the command that made it. A doc
holds a figure between markers::

    <!-- figure: default_run table -->
    (generated: do not edit)
    <!-- /figure -->

``python -m kdrun.report.docfigs`` (``make docs``) rewrites every region from its record;
``--check`` exits 1 naming the regions that no longer match (tests/test_doc_figures.py does the
same); ``record NAME results.json ... --command "kdrun train ..."`` refreshes a record from a run.
"""

import argparse
import io
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from kdrun.files import write_atomic
from kdrun.report.table import results_table

REGION = re.compile(r"(<!-- figure: (\S+) (\S+) -->\n)(.*?)(<!-- /figure -->)", re.S)
KEEP = ("status", "strategy", "data", "teacher", "baseline", "student", "extra_models", "deltas")
KEEP += ("seed", "device", "timings_s", "duration_s", "estimate", "started_at", "kdrun_version")
DATA_KEEP = ("name", "train", "val", "test", "num_classes", "input_shape")
TABLE_WIDTH = 140  # the width the run's own table is rendered at in the docs


def trim(results: dict[str, Any]) -> dict[str, Any]:
    """What a figure reads of a results.json: the rows and deltas, not paths or diagnostics."""
    out = {k: results[k] for k in KEEP if k in results}
    if "data" in out:
        out["data"] = {k: out["data"][k] for k in DATA_KEEP if k in out["data"]}
    return out


def machine() -> str:
    """This machine in one line: platform, cores, Python and torch."""
    import torch

    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"Python {platform.python_version()}, torch {torch.__version__}"
    )


def _commit(repo: Path) -> str:
    done = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "unknown"


def make_record(
    runs: list[dict[str, Any]], command: str, repo: Path, note: str = "", commit: str = ""
) -> dict[str, Any]:
    """A record of ``runs`` (one results.json each) stamped with date, commit, machine, command."""
    return {
        "command": command,
        "date": runs[0].get("started_at", "unknown"),
        "commit": commit or _commit(repo),
        "machine": machine(),
        "note": note,
        "runs": [trim(r) for r in runs],
    }


def _stamp(record: dict[str, Any]) -> str:
    note = f" {record['note']}" if record.get("note") else ""
    return (
        f"*Recorded from `{record['command']}` on {record['date'][:16].replace('T', ' ')} UTC, "
        f"commit {record['commit'][:7]}, on {record['machine']}.{note}*"
    )


def view_table(record: dict[str, Any]) -> str:
    """The table `kdrun train` prints at its end, rendered from the first recorded run."""
    # No terminal and no environment (TERM=dumb, COLUMNS, FORCE_COLOR): the same text anywhere.
    console = Console(
        file=io.StringIO(),
        width=TABLE_WIDTH,
        record=True,
        color_system=None,
        force_terminal=False,
        _environ={},
    )
    console.print(results_table(record["runs"][0]))
    table = "\n".join(line.rstrip() for line in console.export_text().strip("\n").splitlines())
    return f"{_stamp(record)}\n\n```\n{table}\n```\n"


def view_timings(record: dict[str, Any]) -> str:
    """One line: the run's phases and wall time, and its estimate beforehand."""
    run = record["runs"][0]
    phases = ", ".join(f"{k} {v:.1f} s" for k, v in run["timings_s"].items())
    line = f"Phases: {phases}; the whole run {run['duration_s']:.1f} s"
    if run.get("estimate"):
        line += f" (estimated beforehand: {run['estimate']['seconds']:.0f} s)"
    return line + ".\n"


def view_estimate(record: dict[str, Any]) -> str:
    """The run's estimate before training against the phases it then took, in minutes."""
    run = record["runs"][0]
    predicted, t = run["estimate"]["parts_s"], run["timings_s"]
    measured = {"teacher": t["teacher"], "students": t["baseline"] + t["student"], "evaluate": t["evaluate"]}

    def minutes(parts: dict[str, float], digits: int) -> str:
        return ", ".join(f"{k} {v / 60:.{digits}f}" for k, v in parts.items())

    return (
        f"The default job (`{record['command']}`, {record['date'][:10]}, commit {record['commit'][:7]}) "
        f"printed `estimate: ~{sum(predicted.values()) / 60:.0f} min ({minutes(predicted, 0)})` "
        f"and then took {sum(measured.values()) / 60:.1f} min for the same phases "
        f"({minutes(measured, 1)}). {record['note']}\n"
    )


def _mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.2f} ± {100 * std:.2f}"


def view_seeds(record: dict[str, Any]) -> str:
    """A table row per recorded setting: top-1 mean ± std over the seeds and the paired gain."""
    runs = record["runs"]
    gains = [r["student"]["top1"] - r["baseline"]["top1"] for r in runs]
    seeds = ", ".join(str(r.get("seed", "?")) for r in runs)
    return (
        f"{_stamp(record)}\n\n"
        "| seeds | teacher | scratch student | distilled student | KD gain (pts) |\n"
        "|---|---|---|---|---|\n"
        f"| {seeds} | {_mean_std([r['teacher']['top1'] for r in runs])} "
        f"| {_mean_std([r['baseline']['top1'] for r in runs])} "
        f"| {_mean_std([r['student']['top1'] for r in runs])} "
        f"| {'+' if statistics.mean(gains) >= 0 else ''}{_mean_std(gains)} |\n"
    )


VIEWS: dict[str, Callable[[dict[str, Any]], str]] = {
    "table": view_table,
    "timings": view_timings,
    "seeds": view_seeds,
    "estimate": view_estimate,
}


def render(text: str, records: Path) -> str:
    """``text`` with every figure region regenerated from its record in ``records``."""

    def one(match: re.Match[str]) -> str:
        name, view = match.group(2), match.group(3)
        if view not in VIEWS:
            raise ValueError(f"figure view {view!r} of {name!r}: allowed: {', '.join(VIEWS)}")
        record = json.loads((records / f"{name}.json").read_text())
        return match.group(1) + VIEWS[view](record) + match.group(5)

    return REGION.sub(one, text)


def doc_paths(repo: Path) -> list[Path]:
    """The README and every doc: where figure regions may be."""
    return [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]


def stale(repo: Path) -> list[str]:
    """The docs whose figure regions differ from what their records generate."""
    records = repo / "docs" / "records"
    paths = [p for p in doc_paths(repo) if render(p.read_text(), records) != p.read_text()]
    return [str(p.relative_to(repo)) for p in paths]


def refresh(repo: Path) -> list[Path]:
    """Rewrite every doc's figure regions from the records; the docs that changed."""
    changed = []
    for path in doc_paths(repo):
        text = path.read_text()
        new = render(text, repo / "docs" / "records")
        if new != text:
            write_atomic(path, new)
            changed.append(path)
    return changed


def save_record(repo: Path, name: str, record: dict[str, Any]) -> Path:
    """Write ``docs/records/<name>.json``."""
    path = repo / "docs" / "records" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    summary = (__doc__ or "").split("\n")[0]
    parser = argparse.ArgumentParser(prog="python -m kdrun.report.docfigs", description=summary)
    parser.add_argument("--repo", type=Path, default=Path.cwd())
    parser.add_argument("--check", action="store_true", help="exit 1 if a doc's figure is stale")
    sub = parser.add_subparsers(dest="verb")
    rec = sub.add_parser("record", help="refresh docs/records/NAME.json from run(s), then the docs")
    rec.add_argument("name")
    rec.add_argument("results", nargs="+", type=Path, help="results.json of each run (seeds)")
    rec.add_argument("--command", required=True, help="the command that made the run(s)")
    rec.add_argument("--note", default="", help="e.g. the machine's load during the run")
    rec.add_argument("--commit", default="", help="the code that ran (default: the repo's HEAD)")
    args = parser.parse_args(argv)
    if args.verb == "record":
        runs = [json.loads(p.read_text()) for p in args.results]
        record = make_record(runs, args.command, args.repo, args.note, args.commit)
        print(f"wrote {save_record(args.repo, args.name, record)}")
    if args.check:
        bad = stale(args.repo)
        for path in bad:
            print(f"{path}: a figure differs from its record (python -m kdrun.report.docfigs rewrites it)")
        return 1 if bad else 0
    for path in refresh(args.repo):
        print(f"rewrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
