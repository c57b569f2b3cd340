"""Lightning callbacks kdrun adds: plain progress lines off a terminal, BatchNorm re-estimation."""

import time
from collections.abc import Iterable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn

from kdrun.console import console
from kdrun.runtime.device import module_device, to_device


class EpochLines(Callback):
    """One plain line per epoch (for logs and CI, where a live progress bar is noise)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not trainer.is_global_zero:  # one line per epoch, not one per DDP process
            return
        metrics = trainer.callback_metrics
        shown = "  ".join(
            f"{name} {float(metrics[name]):.4f}"
            for name in ("train/loss", "train/acc", "val/acc")
            if name in metrics
        )
        console.print(
            f"[{self.label}] epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  {shown}  "
            f"({time.perf_counter() - self.started:.1f} s)",
            markup=False,
        )


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
        recalibrate_batchnorm(self.model, trainer.datamodule.loader("train", shuffle=True))
        if not trainer.is_global_zero:
            return
        # The per-epoch val/acc used the running statistics of training; the model that is
        # evaluated, cached and shipped has re-estimated ones. Log both, named apart.
        from kdrun.measure import accuracy

        data = trainer.datamodule
        was_training = self.model.training
        self.model.eval()
        recalibrated = accuracy(self.model, data.loader("val", batch_size=512), data.num_classes)["top1"]
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
