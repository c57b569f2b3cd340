"""Several teachers: the student matches their combined soft targets."""

from dataclasses import dataclass, replace
from typing import Any

from omegaconf import DictConfig
from torch import nn

from kdrun.config.schema import MISSING, choice
from kdrun.errors import KdrunConfigError
from kdrun.models.asset import Asset
from kdrun.models.ensemble import WEIGHTINGS, TeacherEnsemble
from kdrun.models.sections import model_sections
from kdrun.strategies.base import Options, register
from kdrun.strategies.vanilla import Vanilla


@dataclass
class MultiTeacherOptions(Options):
    teachers: Any = MISSING  # teacher config names or mappings (kdrun.models.sections)
    weighting: str = choice(MISSING, *WEIGHTINGS)
    weights: Any = MISSING  # with weighting=fixed: one number >= 0 per teacher


@register("multi_teacher")
class MultiTeacher(Vanilla):
    """Vanilla KD against a ``TeacherEnsemble`` of ``strategy.teachers``.

    The report's teacher row is the ensemble (what the student learns from); each member is a
    row of its own (``teacher_1``, ``teacher_2``, ...).
    """

    options = MultiTeacherOptions

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        teachers = model_sections(cfg, "strategy.teachers", "teacher", minimum=2)
        if cfg.strategy.weighting == "fixed":
            weights = cfg.strategy.weights
            ok = weights is not None and len(weights) == len(teachers)
            if not ok or any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in weights):
                raise KdrunConfigError(
                    "strategy.weights", weights, f"must be {len(teachers)} numbers >= 0, one per teacher"
                )
            if sum(weights) <= 0:
                raise KdrunConfigError("strategy.weights", list(weights), "must not all be 0")
        return {f"strategy.teachers[{i}]": section for i, section in enumerate(teachers)}

    @classmethod
    def build(cls, assets, student: nn.Module) -> "MultiTeacher":
        cfg = assets.cfg
        members = [assets.teacher(section) for section in cls.sections(cfg).values()]
        weights = list(cfg.strategy.weights) if cfg.strategy.weighting == "fixed" else None
        ensemble = TeacherEnsemble(
            [m.model for m in members], T=assets.T, weighting=cfg.strategy.weighting, weights=weights
        )
        strategy = cls(student, ensemble, T=assets.T, alpha=assets.alpha)
        name = f"ensemble({'+'.join(m.name for m in members)})"
        strategy.teacher_member = Asset(ensemble.at_temperature(1.0).eval(), name, "ensemble", role="teacher")
        strategy.members = [replace(m, role=f"teacher_{i + 1}") for i, m in enumerate(members)]
        return strategy

    def hparams(self) -> dict:
        return {**super().hparams(), "weighting": self.teacher.weighting, "teachers": len(self.members)}
