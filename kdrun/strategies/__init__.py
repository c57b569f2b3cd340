"""Distillation methods, looked up by name: one file per method, registered with ``@register``."""

from kdrun.strategies import (  # noqa: F401  (registers the built-ins)
    attention,
    dkd,
    hints,
    hydra_heads,
    multi_teacher,
    mutual,
    online,
    qat_kd,
    scratch,
    soft_labels,
    ta_chain,
    vanilla,
)
from kdrun.strategies.base import STRATEGIES, Member, Strategy, register

__all__ = ["STRATEGIES", "Member", "Strategy", "register"]
