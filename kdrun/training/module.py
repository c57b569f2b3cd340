"""The one LightningModule: delegates the step to a strategy, owns metrics and logging."""

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from kdrun.config.schema import MISSING, check, choice, number
from kdrun.errors import KdrunConfigError
from kdrun.runtime import nodes
from kdrun.runtime.device import skip_unloadable_nvml_check
from kdrun.strategies import Strategy

SCHEDULES = ("cosine", "constant", "multistep")


@dataclass
class OptimOptions:
    """The ``optim`` group: the optimizer (``optimizer``, checked by ``OptimizerOptions``) and the
    learning-rate schedule."""

    optimizer: Any = MISSING
    schedule: str = choice(MISSING, *SCHEDULES)
    milestones: Any = MISSING  # multistep: a non-empty list of epochs >= 1
    gamma: float = number(MISSING, gt=0, le=1)  # multistep: the factor at each milestone


@dataclass
class OptimizerOptions:
    """``optim.optimizer``: the keys kdrun checks; any other argument goes to the torch optimizer."""

    lr: float = number(MISSING, gt=0)
    weight_decay: float = number(MISSING, ge=0)
    momentum: float = number(MISSING, ge=0, le=1)
    nesterov: bool = choice(MISSING, True, False)


def check_optim(optim: DictConfig) -> None:
    """``KdrunConfigError`` for the first bad ``optim.*`` value."""
    check(optim, OptimOptions, "optim")
    checked = [name for name in OptimizerOptions.__dataclass_fields__ if name in optim.optimizer]
    check(OmegaConf.masked_copy(optim.optimizer, checked), OptimizerOptions, "optim.optimizer")
    if "lr" not in optim.optimizer:
        raise KdrunConfigError("optim.optimizer.lr", None, "must be a number > 0")
    milestones = optim.get("milestones")
    if optim.schedule == "multistep" and (
        not milestones or not all(type(m) is int and m >= 1 for m in milestones)
    ):
        raise KdrunConfigError(
            "optim.milestones", milestones, "a non-empty list of epochs >= 1, e.g. [150, 180, 210]"
        )


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite: training stops, and the run is recorded as failed."""


class DistillModule(L.LightningModule):
    """Trains ``strategy.student`` with the strategy's loss terms; validates the student."""

    def __init__(self, strategy: Strategy, optim: DictConfig, num_classes: int) -> None:
        super().__init__()
        self.strategy = strategy
        self.optim = optim
        # Reduced over the fit's processes; not in a phase rank 0 trains alone (kdrun.runtime.nodes).
        synced = {"distributed_available_fn": nodes.synced}
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", **synced)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", **synced)
        self.val_loss = MeanMetric(**synced)

    def train(self, mode: bool = True) -> "DistillModule":
        # Lightning switches the whole module to train mode each epoch; teachers must stay in
        # eval mode (BatchNorm statistics and dropout frozen).
        super().train(mode)
        for module in self.strategy.frozen:
            module.eval()
        return self

    def setup(self, stage: str) -> None:
        skip_unloadable_nvml_check()  # in every process of the fit (DDP workers import Lightning anew)

    def on_train_epoch_start(self) -> None:
        self.strategy.on_train_epoch_start(self.current_epoch)
        # Kept on the device and read every `log_every_n_steps` steps and at the epoch's end: a
        # step never waits for the device, and no torchmetrics update runs per step.
        self.predicted: list[tuple[torch.Tensor, torch.Tensor]] = []  # (predicted class, label)
        self.unchecked: list[tuple[int, torch.Tensor, dict[str, torch.Tensor]]] = []  # (step, loss, terms)
        self.loss_sum: torch.Tensor | float = 0.0  # this epoch's losses, summed on the device
        self.loss_steps = 0

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, index = batch
        logits, terms = self.strategy.loss_terms(x, y, index)
        loss = sum(weight * terms[name] for name, weight in self.strategy.weights.items())
        terms = {name: value.detach() for name, value in terms.items()}
        self.predicted.append((logits.detach().argmax(-1), y if y.ndim == 1 else y.argmax(-1)))  # mixed: soft
        self.unchecked.append((self.global_step, loss.detach(), terms))
        self.loss_sum, self.loss_steps = self.loss_sum + loss.detach(), self.loss_steps + 1
        logged = (self.global_step + 1) % self.trainer.log_every_n_steps == 0
        last = batch_idx + 1 == self.trainer.num_training_batches
        if logged or last:
            self._check_finite()
        # A `self.log` call costs about a millisecond of Lightning bookkeeping, more than a small
        # model's whole step: log the step losses only on the steps the loggers write.
        if logged:
            # sync_dist: under DDP the logged step loss is the mean over processes (a no-op in one).
            self.log_dict({f"train/loss_{name}": value for name, value in terms.items()}, sync_dist=True)
            self.log("train/loss", loss.detach(), prog_bar=True, sync_dist=True)
        if last:
            # Logged here, not in on_train_epoch_end: callbacks' epoch-end hooks (the epoch line)
            # run before the module's and must see this epoch's value.
            self.train_acc.update(*(torch.cat(column) for column in zip(*self.predicted, strict=True)))
            self.predicted.clear()
            self.log("train/acc", self.train_acc.compute(), on_step=False, on_epoch=True)
            self.train_acc.reset()
            # The epoch's mean loss, as train/acc is the epoch's accuracy (train/loss: logged steps).
            epoch_loss = self.loss_sum / self.loss_steps
            self.log("train/loss_epoch", epoch_loss, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def _check_finite(self) -> None:
        """``NonFiniteLossError`` naming the first step since the last check whose loss was NaN or
        infinite (one wait for the device per check, not one per step)."""
        losses = torch.stack([loss for _, loss, _ in self.unchecked])
        finite = torch.isfinite(losses)
        if not bool(finite.all()):
            step, loss, terms = self.unchecked[int((~finite).nonzero()[0])]
            raise NonFiniteLossError(self._non_finite(step, loss, terms))
        self.unchecked.clear()

    def _non_finite(self, step: int, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> str:
        bad = [f"train/loss_{name}={float(v)}" for name, v in terms.items() if not torch.isfinite(v)]
        where = f"step {step} (epoch {self.current_epoch})"
        return f"train/loss={float(loss)} at {where}; non-finite terms: {', '.join(bad) or 'none'}"

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        x, y, _ = batch
        logits = self.strategy.student(x)
        self.val_loss.update(F.cross_entropy(logits, y), weight=len(y))
        self.val_acc.update(logits, y)

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss.compute())
        self.log("val/acc", self.val_acc.compute(), prog_bar=True)
        self.val_loss.reset()
        self.val_acc.reset()

    def configure_optimizers(self) -> dict:
        optimizer = instantiate(self.optim.optimizer)(self.strategy.trainable_parameters())
        if self.optim.schedule == "constant":
            return {"optimizer": optimizer}
        if self.optim.schedule == "multistep":  # the CIFAR benchmarks' x0.1 at fixed epochs
            scheduler = torch.optim.lr_scheduler.MultiStepLR(
                optimizer, list(self.optim.milestones), gamma=float(self.optim.gamma)
            )
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
        steps = self.trainer.estimated_stepping_batches
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
