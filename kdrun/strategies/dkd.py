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
    ``strategy.beta``; temperature ``kd.T``. (``kd.alpha`` is not used: DKD has its own.)"""

    def __init__(
        self, student: nn.Module, teacher: nn.Module, T: float, alpha: float, beta: float, ce_weight: float
    ) -> None:
        super().__init__(student, teacher)
        self.T, self.alpha, self.beta, self.ce_weight = T, alpha, beta, ce_weight

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        for key in ("alpha", "beta", "ce_weight"):
            value = cfg.strategy[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise KdrunConfigError(f"strategy.{key}", value, "must be a number >= 0")
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
        )
        return pretrained_teacher(strategy, assets)

    @property
    def weights(self) -> dict[str, float]:
        return {"hard": self.ce_weight, "tckd": self.alpha, "nckd": self.beta}

    def loss_terms(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teacher_logits = self.teacher_outputs(x, index)
        logits = self.student(x)
        tckd, nckd = dkd_terms(logits, teacher_logits, y, self.T)
        return logits, {"hard": F.cross_entropy(logits, y), "tckd": tckd, "nckd": nckd}

    def hparams(self) -> dict:
        return {**super().hparams(), "T": self.T}
