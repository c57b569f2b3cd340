"""Plain supervised training: how teachers and the scratch baseline are trained."""

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.strategies.base import Strategy, pretrained_teacher, register


@register("scratch")
class Scratch(Strategy):
    """Cross-entropy on the labels, no teacher (the configured teacher is still reported)."""

    @classmethod
    def build(cls, assets, student: nn.Module) -> "Scratch":
        return pretrained_teacher(cls(student), assets)

    @property
    def weights(self) -> dict[str, float]:
        return {"hard": 1.0}

    def loss_terms(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = self.student(x)
        return logits, {"hard": F.cross_entropy(logits, y)}
