"""``kdrun regress [recipes...]``: run recipes and check the metrics each must reach."""

import argparse
import sys
from importlib.resources import files
from pathlib import Path

from kdrun.commands import COMMANDS
from kdrun.console import fail
from kdrun.regress.command import regress
from kdrun.regress.recipe import RecipeError


def main(args: list[str]) -> None:
    """Run the selected recipes; exit 0, or 1 on a regression."""
    parser = argparse.ArgumentParser(
        prog="kdrun regress",
        description=COMMANDS["regress"],
        epilog="Overrides after `--` apply to every run: `kdrun regress recipes/ -- epochs=5`.",
    )
    parser.add_argument(
        "targets",
        type=Path,
        nargs="*",
        help="recipe files or folders (default: ./recipes if it exists, else the recipes kdrun ships)",
    )
    parser.add_argument(
        "--tier",
        choices=("fast", "full", "real", "gpu", "all"),
        default="all",
        help="which recipes to run: all = fast + full; real and gpu ones (in a folder per data set) only "
        "with --tier real / --tier gpu (default: %(default)s)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default outputs/regress/<time>)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="run every recipe on these seeds instead of its own (are the bounds robust to new seeds?)",
    )
    args, overrides = (args[: args.index("--")], args[args.index("--") + 1 :]) if "--" in args else (args, [])
    options = parser.parse_args(args)
    try:
        code = regress(
            options.targets or [default_recipes()], options.tier, options.out, overrides, options.seeds
        )
    except RecipeError as err:
        fail(str(err))
    sys.exit(code)


def default_recipes() -> Path:
    """``./recipes`` in a checkout; from any other folder, the recipes that ship in the package."""
    local = Path("recipes")
    return local if local.is_dir() else Path(str(files("kdrun.conf") / "recipe"))
