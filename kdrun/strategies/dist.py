"""DIST (Huang et al. 2022): CE + beta * inter-class + gamma * intra-class relation loss."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.config.schema import MISSING, number
from kdrun.losses import dist_terms
from kdrun.strategies.base import Options, Strategy, pretrained_teacher, register


@dataclass
class DISTOptions(Options):
    beta: float = number(MISSING, ge=0)  # inter-class relation weight
    gamma: float = number(MISSING, ge=0)  # intra-class relation weight
    ce_weight: float = number(MISSING, ge=0)


@register("dist")
class DIST(Strategy):
    """Terms ``hard``, ``inter``, ``intra``; weights ``strategy.ce_weight``, ``strategy.beta``,
    ``strategy.gamma``; temperature ``T``. (``alpha`` is not used: DIST has its own weights.)"""

    caches_views = True

    options = DISTOptions

    def __init__(
        self, student: nn.Module, teacher: nn.Module, T: float, beta: float, gamma: float, ce_weight: float
    ) -> None:
        super().__init__(student, teacher)
        self.T, self.beta, self.gamma, self.ce_weight = T, beta, gamma, ce_weight

    @classmethod
    def build(cls, assets, student: nn.Module) -> "DIST":
        s = assets.cfg.strategy
        strategy = cls(
            student,
            assets.teacher().model,
            T=assets.T,
            beta=float(s.beta),
            gamma=float(s.gamma),
            ce_weight=float(s.ce_weight),
        )
        return pretrained_teacher(strategy, assets)

    @property
    def weights(self) -> dict[str, float]:
        return {"hard": self.ce_weight, "inter": self.beta, "intra": self.gamma}

    def loss_terms(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teacher_logits = self.teacher_outputs(x, index)
        logits = self.student(x)
        inter, intra = dist_terms(*self.soft_logits(logits, teacher_logits), self.T)
        return logits, {"hard": F.cross_entropy(logits, y), "inter": inter, "intra": intra}

    def hparams(self) -> dict:
        return {**super().hparams(), "T": self.T}
