"""The ``kdrun train`` task: prepare (every rejection), phases (teachers, baselines), pipeline, evaluate.

``kdrun.train(overrides)`` (``from kdrun import train``) is also the Python API's train: this
package is callable, so the name means the same whether or not the package was imported first.
"""

import sys
import types
from pathlib import Path
from typing import Any


class _CallableModule(types.ModuleType):
    def __call__(
        self, overrides: list[str] | None = None, run_dir: str | Path | None = None
    ) -> dict[str, Any]:
        from kdrun.train.api import train

        return train(overrides, run_dir)


sys.modules[__name__].__class__ = _CallableModule
