"""Decoupled KD (Zhao et al. 2022): CE + w_t * TCKD + w_n * NCKD from one frozen teacher."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.config.schema import MISSING, number
from kdrun.losses import dkd_terms
from kdrun.strategies.base import Options, Strategy, pretrained_teacher, register


@dataclass
class DKDOptions(Options):
    tckd_weight: float = number(MISSING, ge=0)  # the paper's alpha
    nckd_weight: float = number(MISSING, ge=0)  # the paper's beta
    ce_weight: float = number(MISSING, ge=0)
    warmup_epochs: int = number(0, ge=0, integer=True)  # 0 = no warm-up


@register("dkd")
class DKD(Strategy):
    """Terms ``hard``, ``tckd``, ``nckd``; weights ``strategy.ce_weight``, ``strategy.tckd_weight``,
    ``strategy.nckd_weight`` (the paper's alpha and beta); temperature ``T``. (``alpha`` is not used.)
    ``strategy.warmup_epochs`` = W ramps both KD weights linearly: epoch e (from 1) gets min(e/W, 1)
    of them, as mdistiller does (W = 20 of 240 epochs on CIFAR-100)."""

    caches_views = True

    options = DKDOptions

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        T: float,
        tckd_weight: float,
        nckd_weight: float,
        ce_weight: float,
        warmup_epochs: int = 0,
    ) -> None:
        super().__init__(student, teacher)
        self.T, self.tckd_weight, self.nckd_weight, self.ce_weight = T, tckd_weight, nckd_weight, ce_weight
        self.warmup_epochs = warmup_epochs
        self.ramp = 1.0 if warmup_epochs == 0 else 1.0 / warmup_epochs

    @classmethod
    def build(cls, assets, student: nn.Module) -> "DKD":
        s = assets.cfg.strategy
        teacher = assets.teacher()
        strategy = cls(
            student,
            teacher.model,
            T=assets.T,
            tckd_weight=float(s.tckd_weight),
            nckd_weight=float(s.nckd_weight),
            ce_weight=float(s.ce_weight),
            warmup_epochs=int(s.get("warmup_epochs", 0)),
        )
        return pretrained_teacher(strategy, assets)

    @property
    def weights(self) -> dict[str, float]:
        ramp = self.ramp
        return {"hard": self.ce_weight, "tckd": self.tckd_weight * ramp, "nckd": self.nckd_weight * ramp}

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
