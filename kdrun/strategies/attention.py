"""Attention transfer (Zagoruyko & Komodakis 2017): the student's spatial attention maps (mean of
|a|^p over channels, normalised) match the teacher's at chosen layers; no regressor needed."""

from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from kdrun.config.schema import MISSING
from kdrun.losses import attention_loss
from kdrun.strategies.base import register
from kdrun.strategies.features import FeatureDistill, FeatureOptions, layer_pairs


@dataclass
class AttentionOptions(FeatureOptions):
    p: float = MISSING  # exponent of |a| in the attention map


@register("attention")
class Attention(FeatureDistill):
    """Terms ``soft``, ``hard`` (vanilla) and ``feat`` (attention-map distance, mean over pairs,
    weighted by ``strategy.feat_weight`` = the paper's beta)."""

    needs_4d = True

    options = AttentionOptions

    def __init__(self, *args, p: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.p = p

    @classmethod
    def make(
        cls, cfg: DictConfig, student: nn.Module, teacher: nn.Module, shapes: list, T: float, alpha: float
    ) -> "Attention":
        return cls(
            student,
            teacher,
            T=T,
            alpha=alpha,
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
