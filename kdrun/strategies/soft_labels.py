"""Distil from a file of teacher outputs, no teacher model."""

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun.config.schema import MISSING, choice
from kdrun.data.soft_labels import KEY, describe, read_soft_labels
from kdrun.errors import KdrunConfigError
from kdrun.strategies.base import Options, register
from kdrun.strategies.vanilla import Vanilla


@dataclass
class SoftLabelsOptions(Options):
    path: str = MISSING  # the file `kdrun export-soft-labels` wrote (required)
    check_fingerprint: bool = choice(MISSING, True, False)


@register("soft_labels")
class SoftLabels(Vanilla):
    """Vanilla KD whose teacher logits come from ``strategy.path``; no teacher row is reported."""

    options = SoftLabelsOptions
    caches_views = False  # its targets are a file's, one per image

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        if OmegaConf.is_missing(cfg.strategy, "path") or not cfg.strategy.path:
            raise KdrunConfigError(KEY, None, "required: the file `kdrun export-soft-labels` wrote")
        return {}

    @classmethod
    def preflight(cls, cfg: DictConfig, data) -> None:
        read_soft_labels(cfg.strategy.path, data, cfg.strategy.check_fingerprint)

    @classmethod
    def build(cls, assets, student: nn.Module) -> "SoftLabels":
        cfg = assets.cfg
        strategy = cls(student, None, T=assets.T, alpha=assets.alpha)
        strategy.teacher_logits = read_soft_labels(
            cfg.strategy.path, assets.data, cfg.strategy.check_fingerprint
        )
        strategy.source = describe(cfg.strategy.path)
        return strategy

    def hparams(self) -> dict:
        return {**super().hparams(), "soft_labels": self.source}
