"""Train a strategy with Lightning: the one training path for teachers, baselines and students."""

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, RichProgressBar
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

from kdrun.callbacks import EpochLines, RecalibrateBatchNorm
from kdrun.checkpointing import AtomicCheckpointIO, TrainingRandomness, epoch_checkpoint, resume_point
from kdrun.data import TensorDataModule
from kdrun.loggers import build_loggers
from kdrun.module import DistillModule
from kdrun.strategies import Strategy

# Lightning's start-up chatter (GPU/TPU availability, tips) is not news in a kdrun run.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
# Frozen teachers are in eval mode on purpose; the CSV logger shares the run folder with Hydra.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")

# Keys of the ``trainer`` group that kdrun reads itself; the rest are Lightning Trainer arguments.
KDRUN_TRAINER_KEYS = ("keep_checkpoint",)


def fit(
    strategy: Strategy,
    data: TensorDataModule,
    cfg: DictConfig,
    *,
    epochs: int,
    seed: int,
    log_dir: Path,
    label: str,
    checkpoint_dir: Path | None = None,
    resume: bool = False,
    loggers: list[Logger] | None = None,
) -> dict[str, float]:
    """Train ``strategy`` for ``epochs`` and return the last epoch's logged metrics.

    ``cfg`` is the root config (``trainer``, ``optim``, ``logger``, ``recalibrate_bn``). The
    shuffle order and every random draw of training (dropout) follow ``seed``, whatever ran
    before; the caller seeds model initialisation. A distilled student and its scratch twin thus
    differ only in the loss.

    With ``checkpoint_dir``, each epoch ends with ``checkpoint_dir/last.ckpt`` (written atomically,
    with the random state); with ``resume`` too, the fit continues from it when it loads.
    ``loggers`` default to one per ``cfg.logger`` entry for this phase (``label``), in ``log_dir``.
    """
    L.seed_everything(seed, verbose=False)
    data.shuffle_seed = seed
    on_terminal = sys.stdout.isatty()  # live bar on a terminal; plain lines in logs and CI
    callbacks: list[Callback] = [RichProgressBar(leave=False) if on_terminal else EpochLines(label)]
    if cfg.recalibrate_bn:
        callbacks += [RecalibrateBatchNorm(model) for model in strategy.trained]
    if loggers is None:  # the caller passes the student's, to add the final results after evaluation
        loggers = build_loggers(cfg, log_dir, label)
    if checkpoint_dir is not None:
        callbacks += [epoch_checkpoint(checkpoint_dir), TrainingRandomness()]
    trainer = L.Trainer(
        **{key: value for key, value in cfg.trainer.items() if key not in KDRUN_TRAINER_KEYS},
        max_epochs=epochs,
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=str(log_dir),
        enable_checkpointing=checkpoint_dir is not None,
        plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,
        enable_progress_bar=on_terminal,
    )
    module = DistillModule(strategy, cfg.optim, data.num_classes)
    start = resume_point(checkpoint_dir) if checkpoint_dir is not None and resume else None
    trainer.fit(module, datamodule=data, ckpt_path=start)
    module.eval()
    return _floats(trainer.callback_metrics)


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}
