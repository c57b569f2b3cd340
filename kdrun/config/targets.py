"""What a config may make kdrun call: ``_target_`` from an allowlist, checked before anything runs.

A recipe, a YAML pulled in through ``defaults`` or a copied run directory's overrides can put a
``_target_`` anywhere in the composed config; Hydra would call it. kdrun accepts only classes from
the packages it instantiates on purpose (torch optimizers and LR schedulers, Lightning loggers,
torchvision transforms, kdrun's own; under ``hydra``: Hydra's launchers, sweepers and their
samplers), and never executes a name to find out: the name's prefix is checked first, and only
then the class is looked up, importing nothing outside those packages. Logging configs under
``hydra`` may name ``logging`` handlers and formatters, and no ``()`` factories.
"""

from collections.abc import Iterator
from typing import Any

from omegaconf import DictConfig, OmegaConf

from kdrun.errors import KdrunConfigError

TASK = ("torch.optim.", "lightning.pytorch.loggers.", "torchvision.transforms.", "kdrun.")
HYDRA = ("hydra._internal.core_plugins.", "hydra_plugins.", "optuna.samplers.", "optuna.pruners.", "kdrun.")
LOGGING = ("logging.", "kdrun.files.")


def check_targets(cfg: DictConfig | dict[str, Any]) -> None:
    """Raise ``KdrunConfigError`` for the first ``_target_`` (or logging ``class``/``()``) outside
    the allowlist, in the task config and, when present, its ``hydra`` node."""
    tree = OmegaConf.to_container(cfg, resolve=False) if isinstance(cfg, DictConfig) else cfg
    for key, value in _walk({k: v for k, v in tree.items() if k != "hydra"}):
        if key.endswith("_target_"):
            _check(key, value, TASK)
    hydra = tree.get("hydra") or {}
    for key, value in _walk(hydra, "hydra."):
        if key.endswith("_target_"):
            _check(key, value, HYDRA)
        elif "logging." in key and key.endswith((".class", ".()")):
            if key.endswith(".()"):
                raise KdrunConfigError(key, value, "logging factories are not allowed")
            _check(key, value, LOGGING)


def _walk(node: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        path = f"{prefix}{key}"
        if isinstance(value, dict | list):
            yield from _walk(value, f"{path}.")
        else:
            yield path, value


def _check(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    what = f"a class from {', '.join(p.rstrip('.') for p in allowed)}"
    if not isinstance(value, str) or not value.startswith(allowed):
        raise KdrunConfigError(key, value, f"not allowed: kdrun instantiates only {what}")
    from hydra.utils import get_class

    try:
        found = get_class(value)
    except Exception:  # not importable, or not a class: either way not on the list
        raise KdrunConfigError(key, value, f"not allowed: must name {what}") from None
    module = found.__module__
    if not any(module == p.rstrip(".") or module.startswith(p) for p in allowed):
        raise KdrunConfigError(key, value, f"not allowed: must name {what}")
