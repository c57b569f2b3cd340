"""Online distillation (Anil et al. 2018, codistillation): teacher and student learn together.

No pre-trained teacher: the configured teacher architecture starts from scratch in this run and
learns from the labels; the student distils from the teacher's *current* outputs (detached).
"""

import torch
import torch.nn.functional as F
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.losses import kd_loss
from kdrun.models.asset import Asset
from kdrun.models.sections import display_name, is_ensemble
from kdrun.strategies.base import Strategy, register


@register("online")
class Online(Strategy):
    """Terms: ``teacher_hard`` (the teacher's CE), ``soft`` and ``hard`` (the student's, as vanilla)."""

    def __init__(self, student: nn.Module, teacher: nn.Module, T: float, alpha: float) -> None:
        super().__init__(student)  # the teacher trains here: not frozen
        self.online_teacher = teacher
        self.T, self.alpha = T, alpha

    @classmethod
    def sections(cls, cfg):
        if is_ensemble(cfg.teacher):
            raise KdrunConfigError(
                "teacher",
                "ensemble",
                "strategy=online trains one teacher model alongside "
                "the student; choose a single-model teacher",
            )
        return {}

    @classmethod
    def build(cls, assets, student: nn.Module) -> "Online":
        cfg = assets.cfg
        section = cfg.teacher.copy()
        section.epochs = assets.epochs  # it trains alongside the student
        teacher = assets.build(section, seed=assets.seed)
        strategy = cls(student, teacher, T=assets.T, alpha=assets.alpha)
        strategy.teacher_member = Asset(
            teacher, display_name(section), "trained-in-run", role="teacher", scratch=(section, assets.seed)
        )
        return strategy

    @property
    def trained(self) -> list[nn.Module]:
        return [self.student, self.online_teacher]

    @property
    def weights(self) -> dict[str, float]:
        return {"teacher_hard": 1.0, "soft": self.alpha, "hard": 1.0 - self.alpha}

    def loss_terms(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        teacher_logits = self.online_teacher(x)
        logits = self.student(x)
        return logits, {
            "teacher_hard": F.cross_entropy(teacher_logits, y),
            "soft": kd_loss(*self.soft_logits(logits, teacher_logits.detach()), self.T),
            "hard": F.cross_entropy(logits, y),
        }

    def hparams(self) -> dict:
        return {**super().hparams(), "T": self.T, "alpha": self.alpha}
