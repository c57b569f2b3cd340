"""``kdrun ship PATH... [--cost C] [--min-accuracy X] [--max-latency-ms Y]``: which student to ship."""

import argparse
import sys
from pathlib import Path

from kdrun.commands import COMMANDS
from kdrun.errors import KdrunConfigError
from kdrun.report.frontier import COSTS


def _number(key: str, text: str | None, low: float, high: float | None, what: str) -> float | None:
    """``text`` as a number in (low, high]; one-line ``KdrunConfigError`` otherwise."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (value > low and (high is None or value <= high)):
        raise KdrunConfigError(key, text, what)
    return value


def main(args: list[str]) -> None:
    """Print the students' table, the frontier and (with a floor or a budget) the one to ship;
    exit 1 when no student meets the floor and the budget."""
    from kdrun.report.ship_command import print_recommendation, ship

    options = _parser().parse_args(args)
    floor = _number(
        "--min-accuracy", options.min_accuracy, 1, 100, "a top-1 in percent, in (1, 100], e.g. 97.5"
    )
    budget = _number("--max-latency-ms", options.max_latency_ms, 0, None, "milliseconds, > 0, e.g. 0.5")
    shipping = ship(options.paths, options.cost, floor, budget, options.out)
    if (floor is not None or budget is not None) and not print_recommendation(shipping, floor, budget):
        sys.exit(1)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdrun ship",
        description=COMMANDS["ship"],
        epilog="Example: kdrun ship outputs/regress/all/student_family --cost latency1 --min-accuracy 97 "
        "· writes frontier.png, frontier.md, frontier.csv (docs/cli/ship.md)",
    )
    parser.add_argument(
        "paths", type=Path, nargs="+", metavar="PATH", help="run folders, sweep folders, any folders of runs"
    )
    parser.add_argument(
        "--cost",
        default="latency1",
        help=f"the cost axis of the frontier: {' | '.join(COSTS)} (default: %(default)s)",
    )
    parser.add_argument(
        "--min-accuracy",
        metavar="PCT",
        help="recommend the cheapest student with at least this top-1 (percent)",
    )
    parser.add_argument(
        "--max-latency-ms",
        metavar="MS",
        help="recommend among students at most this slow (CPU ms per call at the --cost batch, else batch 1)",
    )
    parser.add_argument("--out", type=Path, help="where the files go (default: the one folder given, else .)")
    return parser
