"""Teacher-assistant chain (Mirzadeh et al. 2020, TAKD).

teacher -> assistant_1 -> ... -> assistant_n -> student: each assistant is distilled (vanilla KD,
``T``/``alpha``) from the model before it and cached; the student distils from the last.
"""

from dataclasses import dataclass, replace
from typing import Any

from omegaconf import DictConfig
from torch import nn

from kdrun.config.schema import MISSING
from kdrun.models.sections import model_sections
from kdrun.strategies.base import Options, pretrained_teacher, register
from kdrun.strategies.vanilla import Vanilla


@dataclass
class TAChainOptions(Options):
    assistants: Any = MISSING  # teacher config names or mappings, in chain order


@register("ta_chain")
class TAChain(Vanilla):
    """Vanilla KD from the last assistant of a chain that starts at the configured teacher."""

    options = TAChainOptions

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        assistants = model_sections(cfg, "strategy.assistants", "teacher", minimum=1)
        return {f"strategy.assistants[{i}]": section for i, section in enumerate(assistants)}

    @classmethod
    def build(cls, assets, student: nn.Module) -> "TAChain":
        cfg = assets.cfg
        previous = assets.teacher()
        members = []
        for i, section in enumerate(cls.sections(cfg).values()):
            previous = assets.distilled(section, previous)
            members.append(replace(previous, role=f"assistant_{i + 1}", scratch=(section, section.seed)))
        strategy = cls(student, previous.model, T=assets.T, alpha=assets.alpha)
        strategy.members = members
        return pretrained_teacher(strategy, assets)

    def hparams(self) -> dict:
        return {**super().hparams(), "chain": [m.name for m in self.members]}
