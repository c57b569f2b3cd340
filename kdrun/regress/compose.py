"""Recipe -> composed run configs, one per seed; unknown keys are caught here, with their line."""

import tempfile
from pathlib import Path

from hydra import initialize_config_module
from omegaconf import DictConfig, OmegaConf

from kdrun.config.overrides import checked_compose
from kdrun.config.roles import hydra_overrides, is_argument
from kdrun.config.user_yaml import YamlLimitError, check_text, load_config, read_text
from kdrun.errors import KdrunConfigError
from kdrun.regress.recipe import Recipe, RecipeError

IGNORED = ("defaults", "regress")


def _compose(overrides: list[str]) -> DictConfig:
    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        return checked_compose("train", hydra_overrides(overrides))  # the `hydra` node's targets too


def _leaves(node: object, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]


def sweep_points(recipe: Recipe) -> list[list[str]]:
    """The override lists of the recipe's sweep grid (``[[]]`` without a sweep)."""
    points: list[list[str]] = [[]]
    for key, values in recipe.sweep.items():
        points = [[*point, f"{key}={value}"] for point in points for value in values]
    return points


def recipe_configs(recipe: Recipe, extra: list[str], folder: Path | None = None) -> dict[str, DictConfig]:
    """Run label (``seed0``, ``T=4,alpha=0.9/seed0``) -> config: ``recipe=<name> <point> seed=<s>
    <extra>``. ``RecipeError`` on a key the config does not have."""
    for path in sorted(recipe.path.resolve().parent.rglob("*.yaml")):  # Hydra may load any of these
        try:
            check_text(read_text(path, "recipe"), path, "recipe")
        except YamlLimitError as err:
            raise RecipeError(f"{path}:1: {err.allowed}") from None
        except KdrunConfigError:
            continue  # not YAML: Hydra says so if a recipe pulls it in
    link_root = Path(folder or tempfile.mkdtemp(prefix="kdrun-recipes-"))
    link = link_root / "recipe"  # Hydra finds group `recipe` in a folder of that name
    if not link.exists():
        link.symlink_to(recipe.path.resolve().parent, target_is_directory=True)
    search = f"hydra.searchpath=[file://{link_root}]"
    try:
        base = _compose([search, *recipe.group_overrides])
    except KdrunConfigError as err:  # a `_target_` off the allowlist, in the recipe or a default
        raise RecipeError(f"{recipe.path}:1: {err}") from None
    data = OmegaConf.to_container(load_config(recipe.path, "recipe"))
    for leaf in _leaves({k: v for k, v in data.items() if k not in IGNORED}):
        if is_argument(leaf):
            continue  # added, as `+key=…` on the command line
        if OmegaConf.select(base, leaf, default="__missing__") == "__missing__":
            raise RecipeError(f"{recipe.path}:{recipe.lines.get(leaf, 1)}: unknown key {leaf!r}")
    try:
        return {
            "/".join(filter(None, [",".join(point), f"seed{seed}"])): _compose(
                [search, f"recipe={recipe.name}", *point, f"seed={seed}", *extra]
            )
            for point in sweep_points(recipe)
            for seed in recipe.seeds
        }
    except Exception as err:  # Hydra's own composition errors (bad group option, ...)
        message = " ".join(str(err).split()).split(" Config search path:")[0]
        raise RecipeError(f"{recipe.path}:1: {message}") from None
