"""Experiment loggers by config (``logger=csv``, ``tensorboard``, ``mlflow``, or a list of them).

Each entry of ``cfg.logger`` (``logger.<name>``, one per selected option) becomes one Lightning
logger per training phase (teacher, baseline, assistant, student). A phase writes where its
artefacts live (``save_dir``: the run directory for the student, the cache entry for teachers and
baselines); MLflow writes every phase to one tracking store, as runs named after the phase.
"""

import csv
import logging
import os
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import get_class, instantiate
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig, OmegaConf

from kdrun.config.roles import as_typed
from kdrun.errors import KdrunConfigError

# Logger class -> (modules it needs, any one of which will do; the kdrun extra that installs them).
REQUIRES: dict[type, tuple[tuple[str, ...], str]] = {
    TensorBoardLogger: (("tensorboard", "tensorboardX"), "tensorboard"),
    MLFlowLogger: (("mlflow",), "mlflow"),
}
# MLflow's database store (the default tracking URI) needs SQLAlchemy besides mlflow itself.
SQL_STORE = ("sqlalchemy", "alembic")

CSV_FILE = "metrics.csv"
BEFORE_RESUME = ".metrics-before-resume.csv"

# "Experiment not found. Creating it." is expected the first time.
logging.getLogger("lightning.pytorch.loggers.mlflow").setLevel(logging.ERROR)


FIRST_COLUMNS = ("step", "epoch")


def _ordered(keys: list[str]) -> list[str]:
    """``step`` and ``epoch`` first (what a reader indexes by), then the metrics by name."""
    return [k for k in FIRST_COLUMNS if k in keys] + sorted(k for k in keys if k not in FIRST_COLUMNS)


class _OrderedWriter(ExperimentWriter):
    def _record_new_keys(self) -> set[str]:
        new_keys = super()._record_new_keys()
        self.metrics_keys = _ordered(self.metrics_keys)
        return new_keys


class CsvLogger(CSVLogger):
    """Lightning's CSVLogger with ``step`` and ``epoch`` as the first columns of metrics.csv."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _OrderedWriter(log_dir=self.log_dir)
        return self._experiment


def entries(cfg: DictConfig) -> dict[str, DictConfig]:
    """``cfg.logger`` as {option name: logger config}; empty for ``logger=null``."""
    return dict(cfg.get("logger") or {})


def check_loggers(cfg: DictConfig) -> None:
    """Each selected logger can be built: its class exists and its package is installed."""
    for name, conf in entries(cfg).items():
        key = f"logger.{name}._target_"
        if not isinstance(conf, DictConfig) or "_target_" not in conf:
            raise KdrunConfigError(f"logger.{name}", conf, "a logger config with a _target_ (logger/*.yaml)")
        try:
            cls = get_class(conf._target_)
        except Exception:  # Hydra wraps the ImportError/AttributeError
            raise KdrunConfigError(key, conf._target_, "an importable Lightning logger class") from None
        for base, (modules, extra) in REQUIRES.items():
            if not issubclass(cls, base):
                continue
            sql = base is MLFlowLogger and str(conf.get("tracking_uri") or "").startswith("sqlite")
            for options in [modules, *([SQL_STORE] if sql else [])]:
                if not any(find_spec(module) for module in options):
                    raise KdrunConfigError(
                        "logger", name, f"needs {' or '.join(options)}: pip install 'kdrun[{extra}]'"
                    )


def build_loggers(cfg: DictConfig, log_dir: Path, phase: str) -> list[Logger]:
    """One logger per selected option for a training phase, with the resolved config logged."""
    if phase == "student" and cfg.resume is not None and (log_dir / CSV_FILE).is_file():
        # Lightning's CSV writer starts its file afresh; ResumedCsvRows puts the rows of the
        # checkpointed epochs back once the checkpoint says which those are.
        os.replace(log_dir / CSV_FILE, log_dir / BEFORE_RESUME)
    loggers = []
    for conf in entries(cfg).values():
        extra: dict[str, Any] = {"save_dir": str(log_dir)}
        if issubclass(get_class(conf._target_), MLFlowLogger):
            extra |= _mlflow_args(conf, log_dir, phase)
        loggers.append(instantiate(conf, **extra))
    hyperparams = OmegaConf.to_container(cfg, resolve=True)
    for logger in loggers:
        logger.log_hyperparams(hyperparams)
    return loggers


def _mlflow_args(conf: DictConfig, log_dir: Path, phase: str) -> dict[str, Any]:
    """Experiment and run names: the points of a sweep share one experiment, runs are named by phase."""
    sweep = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    overrides = as_typed(HydraConfig.get().job.override_dirname) if HydraConfig.initialized() else ""
    # MLflow sets its log level from this when imported; its table-creation lines are not news.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    args: dict[str, Any] = {
        "tags": {"kdrun.phase": phase, "kdrun.log_dir": str(log_dir), **(conf.get("tags") or {})},
    }
    if conf.get("experiment_name") is None:
        args["experiment_name"] = f"sweep {Path(HydraConfig.get().sweep.dir).name}" if sweep else "kdrun"
    if conf.get("run_name") is None:
        args["run_name"] = f"{phase} {overrides}".strip()
    return args


def log_results(loggers: list[Logger], cfg: DictConfig, results: dict[str, Any]) -> None:
    """The run's final numbers (accuracy, size, latency, deltas) as ``results/...`` metrics."""
    metrics = {f"results/{key}": value for key, value in _numbers(results).items()}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):  # its HPARAMS tab pairs the config with these
            logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True), metrics)
        elif not isinstance(logger, CSVLogger):  # metrics.csv holds training curves; results.json the rest
            logger.log_metrics(metrics)
        logger.finalize("success")


class ResumedCsvRows(Callback):
    """A resumed fit keeps the metrics.csv rows of the epochs its checkpoint holds."""

    def __init__(self, log_dir: Path) -> None:
        self.saved = log_dir / BEFORE_RESUME

    def on_load_checkpoint(
        self, trainer: Trainer, module: LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not self.saved.is_file():
            return
        with self.saved.open(newline="") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("epoch")]
        done = [row for row in rows if int(float(row["epoch"])) <= checkpoint["epoch"]]
        for logger in trainer.loggers:
            if isinstance(logger, CSVLogger):
                logger.experiment.metrics[:0] = [{k: v for k, v in row.items() if v != ""} for row in done]

    def on_fit_start(self, trainer: Trainer, module: LightningModule) -> None:
        self.saved.unlink(missing_ok=True)  # restored above, or no checkpoint loaded: not needed


def _numbers(tree: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric leaves of the result rows and deltas, keyed ``student/top1``, ``deltas/kd_gain_top1``."""
    out: dict[str, float] = {}
    for key, value in tree.items():
        if prefix == "" and key not in ("teacher", "baseline", "student", "deltas"):
            continue
        if isinstance(value, dict):
            out |= _numbers(value, f"{prefix}{key}/")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out
