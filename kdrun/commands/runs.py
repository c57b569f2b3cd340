"""``kdrun runs [DIR] [--filter key=value ...] | --compare RUN RUN ...``: find and compare runs."""

import argparse
from pathlib import Path

from kdrun.commands import COMMANDS
from kdrun.console import console
from kdrun.report.runs import compare_table, find, load_run, runs_table, select


def main(args: list[str]) -> None:
    """Print the runs table or the comparison (``KdrunConfigError`` on a bad folder or filter)."""
    parser = argparse.ArgumentParser(
        prog="kdrun runs",
        description=COMMANDS["runs"],
        epilog="Examples: kdrun runs --filter teacher=cnn --filter T=4 · "
        "kdrun runs --compare outputs/runs/A outputs/runs/B",
    )
    parser.add_argument(
        "dir", type=Path, nargs="?", default=Path("outputs"), help="where to look (default: %(default)s)"
    )
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="keep runs whose config has KEY=VALUE: teacher, student, strategy, dataset, T, alpha, "
        "epochs, seed, status, or any config key (kd.T, optim.optimizer.lr); repeat to combine",
    )
    parser.add_argument(
        "--compare", nargs="+", type=Path, metavar="RUN", help="run folders: differing config keys, metrics"
    )
    options = parser.parse_args(args)
    if options.compare:
        console.print(compare_table([load_run(path) for path in options.compare]))
        return
    runs = find(options.dir)
    shown = select(runs, options.filter)
    console.print(runs_table(shown, title=f"kdrun runs: {options.dir}"))
    console.print(
        f"{len(shown)} of {len(runs)} runs" + (f" match {' '.join(options.filter)}" if options.filter else "")
    )
