"""Train a strategy with Lightning: the one training path for teachers, baselines and students."""

import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import DictConfig

from kdrun.config.schema import MISSING, choice, number
from kdrun.data import TensorDataModule
from kdrun.runtime import nodes, preemption
from kdrun.runtime.device import ACCELERATORS, AUTO, resolve, unfilled_new_tensors
from kdrun.strategies import Strategy
from kdrun.training.callbacks import EpochBars, EpochLines, RecalibrateBatchNorm
from kdrun.training.checkpointing import (
    AtomicCheckpointIO,
    TrainingRandomness,
    epoch_checkpoint,
    resume_point,
)
from kdrun.training.loggers import ResumedCsvRows, build_loggers
from kdrun.training.module import DistillModule

# Lightning's start-up chatter (GPU/TPU availability, tips) is not news in a kdrun run.
logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric").setLevel(logging.WARNING)  # "Initializing distributed: ..."
# Frozen teachers are in eval mode on purpose; the CSV logger shares the run folder with Hydra.
warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
warnings.filterwarnings("ignore", message=r"Experiment logs directory .* exists and is not empty")
warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
# Epoch-level values are torchmetrics computes, which are already reduced across DDP processes.
warnings.filterwarnings("ignore", message=r"It is recommended to use `self.log\(.*sync_dist=True\)`")

# Keys of the ``trainer`` group that kdrun reads itself; the rest are Lightning Trainer arguments.
KDRUN_TRAINER_KEYS = ("keep_checkpoint",)
DDP = ("ddp", "ddp_spawn")  # trainer.strategy values that run one process per device


@dataclass
class TrainerOptions:
    """The ``trainer`` keys kdrun reads or resolves itself; the group's other keys are Lightning
    Trainer arguments (checked against its signature by ``kdrun.train.validate``)."""

    accelerator: str = choice(MISSING, *ACCELERATORS)
    devices: int = number(MISSING, ge=1, integer=True)
    num_nodes: int = number(MISSING, ge=1, integer=True)  # > 1: under torchrun or srun (kdrun.runtime.nodes)
    strategy: str = choice(MISSING, AUTO, *DDP)
    precision: Any = MISSING  # auto or Lightning's spellings, old and new (kdrun.train.validate)
    deterministic: Any = choice(MISSING, AUTO, True, False, "warn")
    benchmark: Any = choice(MISSING, AUTO, True, False)
    log_every_n_steps: int = number(MISSING, ge=1, integer=True)
    num_sanity_val_steps: int = number(MISSING, ge=-1, integer=True)  # -1: the whole val split
    keep_checkpoint: bool = choice(MISSING, True, False)


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
    callbacks: list[Callback] | None = None,
) -> dict[str, float]:
    """Train ``strategy`` for ``epochs`` and return the last epoch's logged metrics.

    ``cfg`` is the root config (``trainer``, ``optim``, ``logger``, ``recalibrate_bn``). The
    shuffle order and every random draw of training (dropout) follow ``seed``, whatever ran
    before; the caller seeds model initialisation. A distilled student and its scratch twin thus
    differ only in the loss.

    With ``checkpoint_dir``, each epoch ends with ``checkpoint_dir/last.ckpt`` (written atomically,
    with the random state); with ``resume`` too, the fit continues from it when it loads.
    ``loggers`` default to one per ``cfg.logger`` entry for this phase (``label``), in ``log_dir``;
    ``callbacks`` are added to kdrun's own (``kdrun tune``'s pruning).
    """
    preemption.enter(label)
    L.seed_everything(seed, verbose=False)
    data.shuffle_seed = seed
    loggers = build_loggers(cfg, log_dir, label) if loggers is None else loggers  # the student's: given
    args = trainer_args(cfg.trainer)
    ddp = isinstance(args.get("strategy"), DDPStrategy)
    on_cpu = args.get("accelerator") == "cpu"  # DDP workers on CPU share the cores between them
    own = _callbacks(strategy, cfg, label, checkpoint_dir, log_dir, ddp=ddp, on_cpu=on_cpu)
    trainer = L.Trainer(
        **args,
        max_epochs=epochs,
        logger=loggers or False,
        callbacks=[*own, *(callbacks or [])],
        default_root_dir=str(log_dir),
        enable_checkpointing=checkpoint_dir is not None,
        plugins=[AtomicCheckpointIO()],
        enable_model_summary=False,
        enable_progress_bar=False,  # kdrun's own bars (EpochBars): no per-step metrics sync
    )
    module = DistillModule(strategy, cfg.optim, data.num_classes)
    start = resume_point(checkpoint_dir) if checkpoint_dir is not None and resume else None
    cpp = _worker_cpp_log_level("ERROR" if ddp else None)
    with _compiled(strategy, cfg.compile), cpp, preemption.at_safe_points(), unfilled_new_tensors():
        trainer.fit(module, datamodule=data, ckpt_path=start)
    module.eval()
    return _floats(trainer.callback_metrics)


def _callbacks(
    strategy: Strategy,
    cfg: DictConfig,
    label: str,
    checkpoint_dir: Path | None,
    log_dir: Path,
    *,
    ddp: bool,
    on_cpu: bool,
) -> list[Callback]:
    """Progress, BatchNorm re-estimation, per-epoch checkpoints, the DDP worker set-up."""
    callbacks: list[Callback] = [EpochLines(label), EpochBars(label)]
    callbacks.append(preemption.SafePoints())
    if cfg.recalibrate_bn:
        trained = list(strategy.trained)
        callbacks += [
            RecalibrateBatchNorm(model, label if len(trained) == 1 else f"{label}: {type(model).__name__}")
            for model in trained
        ]
    if checkpoint_dir is not None:
        callbacks += [epoch_checkpoint(checkpoint_dir), TrainingRandomness(), ResumedCsvRows(log_dir)]
    if ddp:
        callbacks.append(DDPWorker(torch.get_num_threads() if on_cpu else None, cfg.trainer.devices))
    return callbacks


def trainer_args(trainer: DictConfig) -> dict[str, Any]:
    """The ``trainer`` group as Lightning Trainer arguments.

    Several devices (``strategy=ddp``, or ``devices`` > 1) run DDP with the spawn launcher: the
    worker processes run only the fit and hand the weights back. Lightning's default ``ddp``
    launcher re-executes the command line in each worker, which would run the whole kdrun
    pipeline (teacher, baseline, cache locks) again in each. Batches are split by the data module
    (``ShardedBatches``), so Lightning's sampler injection is off. On GPUs the process group is
    Lightning's default for the accelerator (nccl; gloo on CPU).

    Under torchrun or srun (``trainer.num_nodes``, ``kdrun.runtime.nodes``) the launched processes are
    the workers: Lightning's default launcher, no spawn; a phase rank 0 runs alone is one process.

    ``auto`` accelerator, precision, determinism and cudnn.benchmark are resolved for this machine
    (``kdrun.runtime.device``).
    """
    args = {key: value for key, value in trainer.items() if key not in KDRUN_TRAINER_KEYS}
    args |= resolve(trainer).trainer_args()
    if nodes.launched():  # processes started by torchrun / srun (kdrun.runtime.nodes)
        if nodes.is_alone():  # rank 0 trains a cached phase by itself
            return args | {"devices": 1, "num_nodes": 1, "strategy": "auto"}
        # Lightning's standard launcher: it uses the launched processes, and the group kdrun made.
        return args | {"strategy": DDPStrategy(find_unused_parameters=True), "use_distributed_sampler": False}
    if args.get("strategy") in DDP or args.get("devices", 1) > 1:
        # find_unused_parameters: some methods leave parameters out of a step (hints' first stage).
        args["strategy"] = DDPStrategy(start_method="spawn", find_unused_parameters=True)
        args["use_distributed_sampler"] = False
    return args


class DDPWorker(Callback):
    """What a spawned DDP worker does not inherit from the kdrun process.

    Unpickling this callback imports this module in the worker, so the logging and warning filters
    above apply there too. On CPU, ``setup`` shares the process's torch threads between the
    workers; GPU workers keep torch's default.
    """

    def __init__(self, threads: int | None, devices: int) -> None:
        self.threads = None if threads is None else max(1, threads // devices)

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        torch.utils.deterministic.fill_uninitialized_memory = False  # as in the parent (fit)
        if self.threads is not None:
            torch.set_num_threads(self.threads)


@contextmanager
def _compiled(strategy: Strategy, compile: bool) -> Iterator[None]:
    """``compile=true``: the trained models compiled in place (the state_dict keeps its keys) for
    the fit, eager again after it for evaluation, latency and export."""
    compiled = list(strategy.trained) if compile else []
    for model in compiled:
        model.compile()
    try:
        yield
    finally:
        for model in compiled:
            model._compiled_call_impl = None


@contextmanager
def _worker_cpp_log_level(level: str | None) -> Iterator[None]:
    """Spawned workers read ``TORCH_CPP_LOG_LEVEL`` at start: DDP's C++ reducer warns on every
    process that ``find_unused_parameters`` found none, which is expected for most methods."""
    if level is None or "TORCH_CPP_LOG_LEVEL" in os.environ:
        yield
        return
    os.environ["TORCH_CPP_LOG_LEVEL"] = level
    try:
        yield
    finally:
        del os.environ["TORCH_CPP_LOG_LEVEL"]


def _floats(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}
