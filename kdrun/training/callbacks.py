"""Lightning callbacks kdrun adds: a line per epoch, live bars on a terminal, BatchNorm re-estimation."""

import time
from collections.abc import Iterable
from contextlib import ExitStack
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from kdrun.console import console
from kdrun.progress import Phase, phase, track
from kdrun.runtime.device import module_device, to_device


class EpochLines(Callback):
    """One line per epoch: what a log, a CI job and the terminal's scrollback keep."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # one line per epoch, not one per DDP process
            return
        metrics = trainer.callback_metrics
        # train/loss as the epoch's mean (train/loss_epoch), like train/acc: not the last step's.
        shown = "  ".join(
            f"{name} {float(metrics[key]):.4f}"
            for name, key in (
                ("train/loss", "train/loss_epoch"),
                ("train/acc", "train/acc"),
                ("val/acc", "val/acc"),
            )
            if key in metrics
        )
        console.print(
            f"[{self.label}] epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {shown}  "
            f"({time.perf_counter() - self.started:.1f} s)",
            markup=False,
        )


class EpochBars(Callback):
    """A live bar over each epoch's training batches, and one over each validation pass
    (``kdrun.progress``: on a terminal only; the count reaches rich a few times a second)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.open = ExitStack()
        self.bar: Phase | None = None

    def _start(self, trainer: L.Trainer, what: str, total: float) -> None:
        self.close()
        if trainer.is_global_zero:
            total = None if total == float("inf") else int(total)
            self.bar = self.open.enter_context(phase(f"[{self.label}] {what}", total, line=False))

    def close(self, *args: Any, **kwargs: Any) -> None:
        self.open.close()
        self.bar = None

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start(
            trainer, f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}", trainer.num_training_batches
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start(trainer, "validation", sum(trainer.num_val_batches))

    def on_train_batch_end(self, *args: Any) -> None:
        if self.bar is not None:
            self.bar.advance()

    on_validation_batch_end = on_train_batch_end
    on_validation_epoch_end = on_train_epoch_end = on_exception = teardown = close


class RecalibrateBatchNorm(Callback):
    """After training, re-estimate BatchNorm running statistics over the training set.

    Running statistics lag the weights when BN momentum is small (torchvision's mobilenet_v3 uses
    0.01) and training is short: eval-mode accuracy can sit at chance although the model has
    learned. A cumulative average over one pass of the training data fixes it.
    """

    def __init__(self, model: nn.Module, label: str = "") -> None:
        self.model, self.label = model, label

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not has_batchnorm(self.model):
            return
        # The whole training split in every process (train_dataloader() is one DDP process's share).
        batches = trainer.datamodule.loader("train", shuffle=True)
        recalibrate_batchnorm(self.model, track(batches, f"[{self.label}] BatchNorm re-estimation"))
        if not trainer.is_global_zero:
            return
        # The per-epoch val/acc used the running statistics of training; the model that is
        # evaluated, cached and shipped has re-estimated ones. Log both, named apart.
        from kdrun.measure import accuracy

        data = trainer.datamodule
        was_training = self.model.training
        self.model.eval()
        batches = track(data.loader("val", batch_size=512), f"[{self.label}] val accuracy")
        recalibrated = accuracy(self.model, batches, data.num_classes)["top1"]
        self.model.train(was_training)
        during = trainer.callback_metrics.get("val/acc")
        for logger in trainer.loggers:
            logger.log_metrics({"val/acc_bn_recalibrated": recalibrated}, step=trainer.global_step)
        before = "" if during is None else f"{float(during):.4f} with training-time BatchNorm statistics, "
        console.print(
            f"[{self.label}] val/acc {before}{recalibrated:.4f} after BatchNorm re-estimation "
            "(the figure the results use)",
            markup=False,
        )


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable) -> None:
    """Reset and re-estimate every BatchNorm layer's running statistics over ``batches``."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch counts equally
    model.train()
    device = module_device(model)  # at the end of a fit, still the training device
    for x, *_ in batches:
        model(to_device(x, device))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.train(was_training)
