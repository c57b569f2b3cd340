"""DIST (Huang et al. 2022): CE + beta * inter-class + gamma * intra-class relation loss."""

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.losses import dist_terms
from kdrun.strategies.base import Strategy, pretrained_teacher, register


@register("dist")
class DIST(Strategy):
    """Terms ``hard``, ``inter``, ``intra``; weights ``strategy.ce_weight``, ``strategy.beta``,
    ``strategy.gamma``; temperature ``kd.T``. (``kd.alpha`` is not used: DIST has its own.)"""

    def __init__(
        self, student: nn.Module, teacher: nn.Module, T: float, beta: float, gamma: float, ce_weight: float
    ) -> None:
        super().__init__(student, teacher)
        self.T, self.beta, self.gamma, self.ce_weight = T, beta, gamma, ce_weight

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        for key in ("beta", "gamma", "ce_weight"):
            value = cfg.strategy[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise KdrunConfigError(f"strategy.{key}", value, "must be a number >= 0")
        return {}

    @classmethod
    def build(cls, assets, student: nn.Module) -> "DIST":
        s = assets.cfg.strategy
        strategy = cls(
            student,
            assets.teacher().model,
            T=float(assets.cfg.kd.T),
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
