"""Attention transfer (Zagoruyko & Komodakis 2017): the student's spatial attention maps (mean of
|a|^p over channels, normalised) match the teacher's at chosen layers; no regressor needed."""

import torch
from omegaconf import DictConfig
from torch import nn

from kdrun.losses import attention_loss
from kdrun.strategies.base import register
from kdrun.strategies.features import FeatureDistill, layer_pairs


@register("attention")
class Attention(FeatureDistill):
    """Terms ``soft``, ``hard`` (vanilla) and ``feat`` (attention-map distance, mean over pairs,
    weighted by ``strategy.feat_weight`` = the paper's beta)."""

    needs_4d = True

    def __init__(self, *args, p: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.p = p

    @classmethod
    def make(cls, cfg: DictConfig, student: nn.Module, teacher: nn.Module, shapes: list) -> "Attention":
        return cls(
            student,
            teacher,
            T=float(cfg.kd.T),
            alpha=float(cfg.kd.alpha),
            pairs=layer_pairs(cfg),
            feat_weight=float(cfg.strategy.feat_weight),
            p=float(cfg.strategy.p),
        )

    def feature_loss(
        self, i: int, student_feature: torch.Tensor, teacher_feature: torch.Tensor
    ) -> torch.Tensor:
        return attention_loss(student_feature, teacher_feature, self.p)

    def hparams(self) -> dict:
        return {**super().hparams(), "p": self.p}
