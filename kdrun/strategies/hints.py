"""FitNets hints (Romero et al. 2015): a student layer, through a learned regressor, matches a
teacher layer (MSE). Optional two-stage schedule: ``hint_epochs`` of hint loss only, then KD."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from kdrun.config.schema import MISSING
from kdrun.errors import KdrunConfigError
from kdrun.losses import hint_loss
from kdrun.strategies.base import register
from kdrun.strategies.features import FeatureDistill, FeatureOptions, layer_pairs


@dataclass
class HintsOptions(FeatureOptions):
    hint_epochs: int = MISSING  # in [0, student.epochs - 1]: checked in sections()


def regressor(student_shape: torch.Size, teacher_shape: torch.Size) -> nn.Module:
    """1x1 conv for (B, C, H, W) maps, Linear for (B, D) vectors: student channels -> teacher's."""
    if len(student_shape) == 4:
        return nn.Conv2d(student_shape[1], teacher_shape[1], kernel_size=1, bias=False)
    return nn.Linear(student_shape[-1], teacher_shape[-1], bias=False)


@register("hints")
class Hints(FeatureDistill):
    """Terms ``soft``, ``hard`` (vanilla) and ``feat`` (hint MSE, mean over pairs).

    The regressors are trained with the student but belong to the strategy, not the student:
    they are not saved, measured or exported.
    """

    options = HintsOptions

    def __init__(self, *args, regressors: list[nn.Module], hint_epochs: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.regressors = nn.ModuleList(regressors)
        self.hint_epochs = hint_epochs
        self.epoch = 0

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        epochs = cfg.strategy.hint_epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 0 <= epochs < cfg.student.epochs:
            raise KdrunConfigError(
                "strategy.hint_epochs",
                epochs,
                f"an integer in [0, {cfg.student.epochs - 1}] "
                "(epochs of hint-only training before the KD stage; < student.epochs)",
            )
        return super().sections(cfg)

    @classmethod
    def make(
        cls, cfg: DictConfig, student: nn.Module, teacher: nn.Module, shapes: list, T: float, alpha: float
    ) -> "Hints":
        return cls(
            student,
            teacher,
            T=T,
            alpha=alpha,
            pairs=layer_pairs(cfg),
            feat_weight=float(cfg.strategy.feat_weight),
            regressors=[regressor(s, t) for t, s in shapes],
            hint_epochs=int(cfg.strategy.hint_epochs),
        )

    def on_train_epoch_start(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def weights(self) -> dict[str, float]:
        if self.epoch < self.hint_epochs:  # FitNets stage 1: the hint alone
            return {"soft": 0.0, "hard": 0.0, "feat": 1.0}
        return super().weights

    def feature_loss(
        self, i: int, student_feature: torch.Tensor, teacher_feature: torch.Tensor
    ) -> torch.Tensor:
        regressed = self.regressors[i](student_feature)
        if regressed.ndim == 4 and regressed.shape[-2:] != teacher_feature.shape[-2:]:
            regressed = F.interpolate(
                regressed, size=teacher_feature.shape[-2:], mode="bilinear", align_corners=False
            )
        return hint_loss(regressed, teacher_feature)

    def hparams(self) -> dict:
        return {**super().hparams(), "hint_epochs": self.hint_epochs}
