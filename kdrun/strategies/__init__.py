"""Distillation methods, looked up by name: one file per method, registered with ``@register``.

Every module of this package is imported here, so a new method's file registers itself.
"""

import importlib
import pkgutil

from kdrun.strategies.base import STRATEGIES, Assets, Strategy, register

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["STRATEGIES", "Assets", "Strategy", "register"]
