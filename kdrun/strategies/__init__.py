"""Distillation methods, looked up by name: one file per method, registered with ``@register``."""

from kdrun.strategies import scratch, vanilla  # noqa: F401  (registers the built-ins)
from kdrun.strategies.base import STRATEGIES, Strategy, register

__all__ = ["STRATEGIES", "Strategy", "register"]
