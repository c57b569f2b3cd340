"""``kdrun tune [overrides] --budget 30m|N [--space tune/kd_default.yaml]``: a budgeted search
for the distillation settings with the best validation top-1 (``kdrun.tune``)."""

import argparse
import hashlib
from pathlib import Path

from kdrun.commands import COMMANDS
from kdrun.console import fail
from kdrun.errors import KdrunConfigError

EPILOG = """examples:
  kdrun tune --budget 20                          # T and alpha, 20 trials, pruned early when behind
  kdrun tune student=cnn epochs=20 --budget 30m   # any kdrun train overrides; a wall-time budget
  kdrun tune --space tune/dkd.yaml --jobs 2       # DKD's weights, two processes on one study
  kdrun tune --budget 40 --export-recipe tuned    # ... and recipes/tuned.yaml for kdrun regress
Docs: docs/cli/tune.md"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kdrun tune",
        description=COMMANDS["tune"],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "overrides", nargs="*", help="kdrun train overrides every trial gets (student=cnn epochs=20)"
    )
    p.add_argument("--budget", default="20", help="trials in the study (20) or wall time (90s, 30m, 2h)")
    p.add_argument("--space", default="tune/kd_default.yaml", help="search space: tune/NAME or a YAML path")
    p.add_argument(
        "--name",
        default=None,
        help="study name; the same name continues it (default: from the space and overrides)",
    )
    p.add_argument("--storage", default=None, help="Optuna storage URL (default: SQLite in the study folder)")
    p.add_argument("--jobs", type=int, default=1, help="processes searching at once on this machine")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="*",
        default=None,
        help="seeds of the test re-run of the best point (default: the recipe's, else 0 1 2; none: skip)",
    )
    p.add_argument(
        "--no-compare", action="store_true", help="do not re-run the config as given beside the best"
    )
    p.add_argument("--export-recipe", metavar="NAME", help="write the best point as recipes/NAME.yaml")
    p.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    return p


def main(args: list[str]) -> None:
    """Parse, check, search, report."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        fail("kdrun tune needs Optuna: pip install 'kdrun[tune]'")
    from kdrun.train.api import compose
    from kdrun.tune.run import Options, study_folder, tune
    from kdrun.tune.search import Tuning
    from kdrun.tune.space import load_space
    from kdrun.tune.study import Budget, storage_url

    options = parser().parse_intermixed_args(args)
    if options.jobs < 1:
        raise KdrunConfigError("--jobs", options.jobs, "must be an integer >= 1")
    space = load_space(options.space)
    budget = Budget.parse(options.budget)
    name = options.name or default_name(options.space, options.overrides)
    if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise KdrunConfigError("--name", name, "letters, digits, '-', '_' and '.' only")
    cfg = compose([*options.overrides, *space.overrides])
    folder = study_folder(cfg.paths.output_root, name)
    tuning = Tuning(name, folder, options.storage or storage_url(folder), space, list(options.overrides))
    run = Options(
        budget=budget,
        jobs=options.jobs,
        seeds=tuple(recipe_seeds(options.overrides) if options.seeds is None else options.seeds),
        compare=not options.no_compare,
        export_recipe=options.export_recipe,
        worker=options.worker,
        deadline=options.deadline,
    )
    tune(tuning, run, args)


def default_name(space: str, overrides: list[str]) -> str:
    """The space's name, plus a digest of the overrides when there are any: the same command
    continues the same study."""
    stem = Path(space).stem
    if not overrides:
        return stem
    return f"{stem}-{hashlib.sha256(' '.join(overrides).encode()).hexdigest()[:8]}"


def recipe_seeds(overrides: list[str]) -> list[int]:
    """A ``recipe=NAME`` override's ``regress.seeds``; else 0, 1, 2."""
    from kdrun.commands.regress import default_recipes
    from kdrun.regress.recipe import RecipeError, load_recipe

    for override in overrides:
        if override.startswith("recipe="):
            try:
                return load_recipe(default_recipes() / f"{override.split('=', 1)[1]}.yaml").seeds
            except (RecipeError, OSError):
                break  # composing the config names the bad recipe
    return [0, 1, 2]
