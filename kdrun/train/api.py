"""``kdrun.train(overrides)`` from Python: compose the config, run, raise instead of exiting."""

from datetime import datetime
from pathlib import Path
from typing import Any

from kdrun.config.overrides import checked_compose
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
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    overrides = hydra_overrides(overrides or [])  # teacher=resnet50 -> model@teacher=resnet50
    fresh = not GlobalHydra.instance().is_initialized()
    try:
        if fresh:
            with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
                cfg = checked_compose(config_name, overrides)
        else:  # inside a Hydra app or another compose: reuse its config search path
            cfg = checked_compose(config_name, overrides)
        OmegaConf.resolve(cfg)
    except KdrunConfigError:
        raise
    except (HydraException, OmegaConfBaseException, ValueError, KeyError) as err:
        message = " ".join(str(err).split()).split(" Config search path:")[0]
        raise KdrunConfigError(
            "overrides", overrides, message.removeprefix(f"In '{config_name}': ")
        ) from None
    return cfg


def train(overrides: list[str] | None = None, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Run ``kdrun train <overrides>`` in this process and return its results (results.json).

    ``run_dir`` defaults to ``<paths.output_root>/runs/<date_time>``, as on the command line;
    the composed config and the overrides are saved under ``.hydra/`` as Hydra would.
    """
    from omegaconf import OmegaConf

    from kdrun.train.pipeline import RESULTS
    from kdrun.train.pipeline import train as train_task

    cfg = compose(overrides)
    if run_dir is None:
        stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
        run_dir = Path(cfg.paths.output_root) / "runs" / stamp
    run_dir = Path(run_dir)
    refuse_links(run_dir, "run_dir")  # Lightning and the loggers would write through a link
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / ".hydra" / "config.yaml", OmegaConf.to_yaml(cfg))
    write_atomic(
        run_dir / ".hydra" / "overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(list(overrides or [])))
    )
    try:
        return train_task(cfg, run_dir)
    except KdrunConfigError:
        raise
    except Exception as err:  # train() wrote results.json with the error and traceback
        import json

        try:
            recorded = json.loads((run_dir / RESULTS).read_text())
        except (OSError, ValueError):
            recorded = None
        raise KdrunRunError(f"run failed: {type(err).__name__}: {err}", run_dir, recorded) from err
