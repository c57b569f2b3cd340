"""``kdrun.train(overrides)`` from Python: compose the config, run, raise instead of exiting."""

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from kdrun.config.overrides import check_added_keys, check_sweep_line, checked_compose
from kdrun.config.roles import hydra_overrides
from kdrun.errors import KdrunConfigError
from kdrun.files import refuse_links, write_atomic


class KdrunRunError(RuntimeError):
    """A run that started and failed; ``results`` is what its results.json recorded."""

    def __init__(self, message: str, run_dir: Path, results: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.run_dir, self.results = run_dir, results or {}


def compose(overrides: list[str] | None = None, config_name: str = "train") -> Any:
    """The config ``kdrun train <overrides>`` would run, resolved; ``KdrunConfigError`` if it cannot be."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = hydra_overrides(override_list(overrides))  # teacher=resnet50 -> model@teacher=resnet50
    fresh = not GlobalHydra.instance().is_initialized()
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
        check_sweep_line(parsed, multirun=False)
        if fresh:
            with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
                cfg = checked_compose(config_name, overrides)
        else:  # inside a Hydra app or another compose: reuse its config search path
            cfg = checked_compose(config_name, overrides)
        OmegaConf.resolve(cfg)
        check_added_keys(parsed, cfg)  # +alpah=0.5 is refused here as on the command line
    except KdrunConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError, KeyError) as err:
        message = " ".join(str(err).split()).split(" Config search path:")[0]
        raise KdrunConfigError(
            "overrides", overrides, message.removeprefix(f"In '{config_name}': ")
        ) from None
    return cfg


def override_list(overrides: Any) -> list[str]:
    """``overrides`` as a list of strings; ``train("T=4")`` is refused, not split into characters."""
    if overrides is None:
        return []
    if isinstance(overrides, list | tuple) and all(isinstance(o, str) for o in overrides):
        return list(overrides)
    raise KdrunConfigError("overrides", overrides, "a list of strings, e.g. ['T=4', 'teacher=cnn']")


def _run_dir(run_dir: Any, cfg: Any) -> Path:
    if run_dir is None:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
        return Path(cfg.paths.output_root) / "runs" / stamp
    if isinstance(run_dir, str | os.PathLike) and str(run_dir):
        return Path(run_dir)
    raise KdrunConfigError(
        "run_dir", run_dir, "a path (str or pathlib.Path), or None for one under paths.output_root"
    )


def train(overrides: list[str] | None = None, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Run ``kdrun train <overrides>`` in this process and return its results (results.json).

    ``run_dir`` defaults to ``<paths.output_root>/runs/<date_time>``, as on the command line;
    the composed config and the overrides are saved under ``.hydra/`` as Hydra would. Bad input
    raises ``KdrunConfigError`` and leaves no run folder behind; the caller's torch settings and
    random number generators are as they were when ``train`` returns or raises.
    """
    from omegaconf import OmegaConf

    from kdrun.train.pipeline import RESULTS
    from kdrun.train.pipeline import train as train_task

    cfg = compose(overrides)
    run_dir = _run_dir(run_dir, cfg)
    refuse_links(run_dir, "run_dir")  # Lightning and the loggers would write through a link
    new = not run_dir.exists()
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    written = [run_dir / ".hydra" / "config.yaml", run_dir / ".hydra" / "overrides.yaml"]
    write_atomic(written[0], OmegaConf.to_yaml(cfg))
    write_atomic(written[1], OmegaConf.to_yaml(OmegaConf.create(override_list(overrides))))
    try:
        with caller_state():
            return train_task(cfg, run_dir)
    except KdrunConfigError:
        if new:  # refused before training: take back what this call made, nothing else
            _remove_empty(run_dir, written)
        raise
    except Exception as err:  # train() wrote results.json with the error and traceback
        import json

        try:
            recorded = json.loads((run_dir / RESULTS).read_text())
        except (OSError, ValueError):
            recorded = None
        raise KdrunRunError(f"run failed: {type(err).__name__}: {err}", run_dir, recorded) from err


def _remove_empty(run_dir: Path, written: list[Path]) -> None:
    """Remove the files ``train`` wrote, then the folders if nothing else is in them."""
    for path in written:
        path.unlink(missing_ok=True)
    for folder in (run_dir / ".hydra", run_dir):
        try:
            folder.rmdir()
        except OSError:  # something else is there: leave it
            return


@contextmanager
def caller_state() -> Iterator[None]:
    """Put back what a run changes in the process: the random number generators (torch, CUDA,
    NumPy, Python), deterministic algorithms, cuDNN flags, float32 matmul precision and the seed
    variables Lightning sets in the environment."""
    import numpy as np
    import torch

    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    rng = (torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda else None)
    generators = (np.random.get_state(), random.getstate())
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    precision = torch.get_float32_matmul_precision()
    names = ("PL_GLOBAL_SEED", "PL_SEED_WORKERS", "CUBLAS_WORKSPACE_CONFIG")
    environ = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        torch.set_rng_state(rng[0])
        if rng[1] is not None:
            torch.cuda.set_rng_state_all(rng[1])
        np.random.set_state(generators[0])
        random.setstate(generators[1])
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn
        torch.set_float32_matmul_precision(precision)
        for name, value in environ.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
