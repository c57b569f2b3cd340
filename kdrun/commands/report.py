"""``kdrun report DIR``: summarise every run under a folder."""

import argparse
from pathlib import Path

from kdrun.commands import COMMANDS
from kdrun.report.command import METRICS, report


def main(args: list[str]) -> None:
    """Parse the arguments and write the report (``KdrunConfigError`` on a bad folder or metric)."""
    parser = argparse.ArgumentParser(prog="kdrun report", description=COMMANDS["report"])
    parser.add_argument("dir", type=Path, help="a run directory, a multirun directory, or any folder of runs")
    parser.add_argument("--metric", default="gain", help=f"heatmap cell value: {' | '.join(METRICS)}")
    parser.add_argument(
        "--html", action="store_true", help="also write report.html: tables, images, configs in one file"
    )
    options = parser.parse_args(args)
    report(options.dir, options.metric, html=options.html)
