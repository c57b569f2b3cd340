"""What hints and attention transfer share: layer pairs chosen by name, captured by hooks, added
to the output-level KD loss as a ``feat`` term. Not a strategy by itself."""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun.config.schema import MISSING, number
from kdrun.errors import KdrunConfigError
from kdrun.losses import kd_loss
from kdrun.models.build import build
from kdrun.models.sections import display_name, is_ensemble
from kdrun.models.taps import check_layer, forward_with_features
from kdrun.strategies.base import Options, pretrained_teacher
from kdrun.strategies.vanilla import Vanilla

Pair = tuple[str, str]  # (teacher layer, student layer)


@dataclass
class FeatureOptions(Options):
    pairs: Any = MISSING  # [{teacher: <layer>, student: <layer>}, ...] or null (default_pairs)
    feat_weight: float = number(MISSING, ge=0)
    default_pairs: Any = MISSING  # {"<teacher>-><student>": pairs}


def layer_pairs(cfg: DictConfig) -> list[Pair]:
    """``strategy.pairs``, or the strategy's default pair for this teacher -> student."""
    pairs = cfg.strategy.pairs
    if pairs is None:
        key = f"{cfg.teacher.name}->{cfg.student.name}"
        pairs = (cfg.strategy.default_pairs or {}).get(key)
        if pairs is None:
            known = ", ".join(cfg.strategy.default_pairs or {})
            raise KdrunConfigError(
                "strategy.pairs",
                None,
                f"no default layer pair for {key} (defaults exist for: {known}); set "
                "strategy.pairs='[{teacher: <layer>, student: <layer>}]' (names: `kdrun layers <model>`)",
            )
    pairs = OmegaConf.to_container(pairs) if not isinstance(pairs, list) else pairs
    if (
        not isinstance(pairs, list)
        or not pairs
        or not all(isinstance(p, dict) and set(p) == {"teacher", "student"} for p in pairs)
    ):
        raise KdrunConfigError(
            "strategy.pairs", pairs, "a non-empty list of {teacher: <layer>, student: <layer>}"
        )
    return [(str(p["teacher"]), str(p["student"])) for p in pairs]


class FeatureDistill(Vanilla):
    """Vanilla KD plus ``feat_weight`` x the mean over layer pairs of ``feature_loss``.

    The teacher runs on every step (its intermediate features are not cached); its forward is
    under ``no_grad``. Hooks are attached for one forward call only.
    """

    options = FeatureOptions

    needs_4d: bool = False
    caches_logits = False  # a step needs the teacher's features, not only its logits
    caches_views = False

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        T: float,
        alpha: float,
        pairs: list[Pair],
        feat_weight: float,
    ) -> None:
        super().__init__(student, teacher, T=T, alpha=alpha)
        self.pairs, self.feat_weight = pairs, feat_weight

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        if is_ensemble(cfg.teacher):
            raise KdrunConfigError(
                "teacher", "ensemble", f"strategy={cfg.strategy.name} reads one teacher's layers"
            )
        layer_pairs(cfg)
        return {}

    @classmethod
    def preflight(cls, cfg: DictConfig, data) -> None:
        teacher, student = build(cfg.teacher, data).eval(), build(cfg.student, data).eval()
        shapes = cls._shapes(cfg, teacher, student, data.splits["train"][0][:2])
        for i, ((t_name, s_name), (t_shape, s_shape)) in enumerate(
            zip(layer_pairs(cfg), shapes, strict=True)
        ):
            if len(t_shape) != len(s_shape) or (cls.needs_4d and len(t_shape) != 4):
                need = "4-D feature maps (B, C, H, W)" if cls.needs_4d else "features of the same rank"
                raise KdrunConfigError(
                    f"strategy.pairs[{i}]",
                    f"{t_name} {tuple(t_shape)} / {s_name} {tuple(s_shape)}",
                    f"needs {need}; pick other layers (`kdrun layers`)",
                )

    @classmethod
    def _shapes(cls, cfg: DictConfig, teacher: nn.Module, student: nn.Module, x: torch.Tensor) -> list:
        pairs = layer_pairs(cfg)
        for i, (t_name, s_name) in enumerate(pairs):
            check_layer(teacher, t_name, f"strategy.pairs[{i}].teacher", display_name(cfg.teacher))
            check_layer(student, s_name, f"strategy.pairs[{i}].student", display_name(cfg.student))
        with torch.no_grad():
            _, t_feats = forward_with_features(teacher, [t for t, _ in pairs], x)
            _, s_feats = forward_with_features(student, [s for _, s in pairs], x)
        return [(t_feats[t].shape, s_feats[s].shape) for t, s in pairs]

    @classmethod
    def build(cls, assets, student: nn.Module) -> "FeatureDistill":
        cfg = assets.cfg
        teacher = assets.teacher()
        probe = assets.data.splits["train"][0][:2]
        was = student.training
        shapes = cls._shapes(cfg, teacher.model.eval(), student.eval(), probe)
        student.train(was)
        strategy = cls.make(cfg, student, teacher.model, shapes, T=assets.T, alpha=assets.alpha)
        return pretrained_teacher(strategy, assets)

    @classmethod
    def make(
        cls, cfg: DictConfig, student: nn.Module, teacher: nn.Module, shapes: list, T: float, alpha: float
    ) -> "FeatureDistill":
        raise NotImplementedError

    def cache_teacher_logits(self, batches) -> None:
        """Nothing to cache: the teacher's intermediate features are needed on every step."""

    def feature_loss(
        self, i: int, student_feature: torch.Tensor, teacher_feature: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    @property
    def weights(self) -> dict[str, float]:
        return {**super().weights, "feat": self.feat_weight}

    def loss_terms(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
        with torch.no_grad():
            teacher_logits, t_feats = forward_with_features(self.teacher, [t for t, _ in self.pairs], x)
        logits, s_feats = forward_with_features(self.student, [s for _, s in self.pairs], x)
        feat = torch.stack(
            [self.feature_loss(i, s_feats[s], t_feats[t]) for i, (t, s) in enumerate(self.pairs)]
        ).mean()
        return logits, {
            "soft": kd_loss(*self.soft_logits(logits, teacher_logits), self.T),
            "hard": F.cross_entropy(logits, y),
            "feat": feat,
        }

    def hparams(self) -> dict:
        return {**super().hparams(), "pairs": [{"teacher": t, "student": s} for t, s in self.pairs]}
