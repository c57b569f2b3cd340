"""Decoupled KD (Zhao et al. 2022): CE + alpha * TCKD + beta * NCKD from one frozen teacher."""

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.losses import dkd_terms
from kdrun.strategies.base import Strategy, pretrained_teacher, register


@register("dkd")
class DKD(Strategy):
    """Terms ``hard``, ``tckd``, ``nckd``; weights ``strategy.ce_weight``, ``strategy.alpha``,
    ``strategy.beta``; temperature ``kd.T``. (``kd.alpha`` is not used: DKD has its own.)
    ``strategy.warmup_epochs`` = W ramps both KD weights linearly: epoch e (from 1) gets min(e/W, 1)
    of them, as mdistiller does (W = 20 of 240 epochs on CIFAR-100)."""

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        T: float,
        alpha: float,
        beta: float,
        ce_weight: float,
        warmup_epochs: int = 0,
    ) -> None:
        super().__init__(student, teacher)
        self.T, self.alpha, self.beta, self.ce_weight = T, alpha, beta, ce_weight
        self.warmup_epochs = warmup_epochs
        self.ramp = 1.0 if warmup_epochs == 0 else 1.0 / warmup_epochs

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        for key in ("alpha", "beta", "ce_weight"):
            value = cfg.strategy[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise KdrunConfigError(f"strategy.{key}", value, "must be a number >= 0")
        warmup = cfg.strategy.get("warmup_epochs", 0)
        if type(warmup) is not int or warmup < 0:
            raise KdrunConfigError(
                "strategy.warmup_epochs", warmup, "must be an integer >= 0 (0 = no warm-up)"
            )
        return {}

    @classmethod
    def build(cls, assets, student: nn.Module) -> "DKD":
        s = assets.cfg.strategy
        teacher = assets.teacher()
        strategy = cls(
            student,
            teacher.model,
            T=float(assets.cfg.kd.T),
            alpha=float(s.alpha),
            beta=float(s.beta),
            ce_weight=float(s.ce_weight),
            warmup_epochs=int(s.get("warmup_epochs", 0)),
        )
        return pretrained_teacher(strategy, assets)

    @property
    def weights(self) -> dict[str, float]:
        return {"hard": self.ce_weight, "tckd": self.alpha * self.ramp, "nckd": self.beta * self.ramp}

    def on_train_epoch_start(self, epoch: int) -> None:
        if self.warmup_epochs:
            self.ramp = min((epoch + 1) / self.warmup_epochs, 1.0)

    def loss_terms(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teacher_logits = self.teacher_outputs(x, index)
        logits = self.student(x)
        tckd, nckd = dkd_terms(*self.soft_logits(logits, teacher_logits), y, self.T)
        return logits, {"hard": F.cross_entropy(logits, y), "tckd": tckd, "nckd": nckd}

    def hparams(self) -> dict:
        return {**super().hparams(), "T": self.T}
