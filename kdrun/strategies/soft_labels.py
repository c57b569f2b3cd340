"""Distil from a file of teacher outputs, no teacher model."""

from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.soft_labels import KEY, describe, read_soft_labels
from kdrun.strategies.base import register
from kdrun.strategies.vanilla import Vanilla


@register("soft_labels")
class SoftLabels(Vanilla):
    """Vanilla KD whose teacher logits come from ``soft_labels.path``; no teacher row is reported."""

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        if OmegaConf.is_missing(cfg.soft_labels, "path") or not cfg.soft_labels.path:
            raise KdrunConfigError(KEY, None, "required: the file `kdrun export-soft-labels` wrote")
        if cfg.soft_labels.check_fingerprint not in (True, False):
            raise KdrunConfigError(
                "soft_labels.check_fingerprint", cfg.soft_labels.check_fingerprint, "allowed: true, false"
            )
        return {}

    @classmethod
    def preflight(cls, cfg: DictConfig, data) -> None:
        read_soft_labels(cfg.soft_labels.path, data, cfg.soft_labels.check_fingerprint)

    @classmethod
    def build(cls, assets, student: nn.Module) -> "SoftLabels":
        cfg = assets.cfg
        strategy = cls(student, None, T=float(cfg.kd.T), alpha=float(cfg.kd.alpha))
        strategy.teacher_logits = read_soft_labels(
            cfg.soft_labels.path, assets.data, cfg.soft_labels.check_fingerprint
        )
        strategy.source = describe(cfg.soft_labels.path)
        return strategy

    def hparams(self) -> dict:
        return {**super().hparams(), "soft_labels": self.source}
