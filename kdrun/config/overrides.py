"""Command-line arguments checked before Hydra sees them: Hydra's flags, every override, every
``_target_`` they compose to (the ``hydra`` node's callbacks, launcher and sweeper included).

Hydra instantiates its callbacks, launcher and sweeper from the composed config before the task
runs, so the allowlist (``kdrun.config.targets``) must see the same composition first, whatever
the arguments look like. Flags are parsed with Hydra's own parser; the ones that change where
configs come from (``--config-path``, ``--config-dir``, another ``--config-name``) or load a
pickle (``--experimental-rerun``) are refused.
"""

import argparse
import errno
import os
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from kdrun.config.roles import OPEN_KEYS
from kdrun.config.targets import check_targets
from kdrun.errors import KdrunConfigError
from kdrun.files import refuse_links

# Flags that print and run nothing (no task, no callback): the overrides are not composed here.
PRINT_ONLY = ("help", "hydra_help", "shell_completion")


def hydra_arguments(args: list[str], config_name: str) -> argparse.Namespace:
    """``args`` as Hydra's parser reads them (``overrides``, ``multirun``, the flags); refuses the
    flags that would load configs or code from elsewhere."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()

    def refuse(message: str) -> None:
        raise KdrunConfigError(
            "arguments", " ".join(args), f"{message}; Hydra's flags go before the overrides"
        )

    parser.error = refuse  # type: ignore[method-assign]  # one line, not argparse's usage and exit
    parsed = parser.parse_args(args)
    for flag, value in [
        ("--config-path", parsed.config_path),
        ("--config-dir", parsed.config_dir),
        ("--experimental-rerun", parsed.experimental_rerun),
    ]:
        if value is not None:
            raise KdrunConfigError(
                flag, value, f"not allowed: kdrun composes only its own configs ({config_name})"
            )
    if parsed.config_name not in (None, config_name):
        raise KdrunConfigError("--config-name", parsed.config_name, f"allowed: {config_name}")
    return parsed


def checked_compose(config_name: str, overrides: list[str]) -> DictConfig:
    """Hydra's compose (in an initialised Hydra) with every ``_target_`` checked, the ``hydra``
    node's included, and that node then removed, as a plain compose returns it."""
    from hydra import compose

    cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    check_targets(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def check_sweep_line(parsed: list[Any], multirun: bool) -> None:
    """A value list (``T=2,4``) needs ``-m``: say so instead of Hydra's error."""
    for override in parsed:
        if override.is_sweep_override() and not multirun:
            key, value = override.get_key_element(), override.input_line.split("=", 1)[-1]
            raise KdrunConfigError(
                key,
                value,
                f"several values sweep: add -m (kdrun train -m {key}={value}); "
                f"a list is {key}=[{value}], a string '{key}=\"{value}\"'",
            )


def variants(parsed: list[Any]) -> list[list[str]]:
    """The override lists to compose for a sweep: each value of each swept key once, the other
    keys at their first value (``[overrides]`` without a sweep)."""
    values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.input_line] for o in parsed]
    keys = [o.get_key_element() if o.is_sweep_override() else None for o in parsed]

    def line(i: int, value: str) -> str:
        return value if keys[i] is None else f"{keys[i]}={value}"

    first = [line(i, v[0]) for i, v in enumerate(values)]
    return [first] + [
        [*first[:i], line(i, value), *first[i + 1 :]] for i, v in enumerate(values) for value in v[1:]
    ]


def check_added_keys(parsed: list[Any], cfg: DictConfig) -> None:
    """``+key=value`` adds only arguments (``OPEN_KEYS``) or config groups: anywhere else an added
    key is a typo that would be silently ignored (``+alpah=0.5``)."""
    from difflib import get_close_matches

    for override in parsed:
        key = override.key_or_group
        if not override.is_add() or key.startswith(OPEN_KEYS):
            continue
        if (files("kdrun.conf") / key.replace(".", "/")).is_dir():  # `+group=option`
            continue
        known = [k for k in leaf_keys(OmegaConf.to_container(cfg)) if k != key and not k.startswith("hydra.")]
        close = get_close_matches(key, known, n=2, cutoff=0.7)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        raise KdrunConfigError(
            key, override.value(), f"not a config key (`+` adds keys only under {', '.join(OPEN_KEYS)}){hint}"
        )


def check_folders(cfg: DictConfig, multirun: bool) -> None:
    """The run's folder and the cache can be created, and the run's folder holds no link: Hydra
    writes .hydra/*.yaml and Lightning its files through one."""
    run_dir = Path(cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir)
    check_writable("paths.output_root", cfg.paths.output_root, run_dir)
    check_writable("paths.cache_dir", cfg.paths.cache_dir, Path(cfg.paths.cache_dir))
    refuse_links(run_dir, "resume" if cfg.resume else "hydra.sweep.dir" if multirun else "hydra.run.dir")


def check_writable(key: str, value: str, folder: Path) -> None:
    """The run's folder must be creatable: a read-only or full disk is one line, not Hydra's trace."""
    existing = folder.absolute()
    while True:  # the nearest folder that exists; a link loop on the way is an error, not "absent"
        try:
            os.stat(existing)
            break
        except FileNotFoundError:
            existing = existing.parent
        except OSError as err:  # ELOOP, ENOTDIR (a file on the way), EACCES
            reason = f"cannot create {folder}: {existing}: {err.strerror}"
            raise KdrunConfigError(key, value, reason) from None
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(existing))
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        reason = err.strerror or str(err)
        raise KdrunConfigError(key, value, f"cannot create {folder}: {existing}: {reason}") from None


def leaf_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a nested dict, inner nodes included."""
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in [f"{prefix}{k}", *leaf_keys(v, f"{prefix}{k}.")]]
    return []
