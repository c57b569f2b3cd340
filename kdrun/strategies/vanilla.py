"""Hinton et al. 2015: alpha * T^2 * KL(teacher || student at T) + (1 - alpha) * CE(labels)."""

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.losses import kd_loss
from kdrun.strategies.base import Strategy, pretrained_teacher, register


@register("vanilla")
class Vanilla(Strategy):
    """Soft targets from one frozen teacher, mixed with the hard labels.

    ``alpha`` weighs the soft (distillation) term, ``1 - alpha`` the hard cross-entropy term.
    ``teacher`` may be ``None`` when ``teacher_logits`` are given (a soft-label file).
    """

    caches_views = True

    def __init__(self, student: nn.Module, teacher: nn.Module | None, T: float, alpha: float) -> None:
        super().__init__(student, teacher)
        self.T, self.alpha = T, alpha

    @classmethod
    def build(cls, assets, student: nn.Module) -> "Vanilla":
        strategy = cls(student, assets.teacher().model, T=assets.T, alpha=assets.alpha)
        return pretrained_teacher(strategy, assets)

    @property
    def weights(self) -> dict[str, float]:
        return {"soft": self.alpha, "hard": 1.0 - self.alpha}

    def loss_terms(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teacher_logits = self.teacher_outputs(x, index)
        logits = self.student(x)
        return logits, {
            "soft": kd_loss(*self.soft_logits(logits, teacher_logits), self.T),
            "hard": F.cross_entropy(logits, y),
        }

    def hparams(self) -> dict:
        return {**super().hparams(), "T": self.T, "alpha": self.alpha}
