"""kdrun: a config-driven runner for knowledge-distillation experiments.

From Python: ``from kdrun import train, report`` (see ``kdrun.api``).
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["KdrunConfigError", "KdrunRunError", "__version__", "report", "train"]


def __getattr__(name: str) -> Any:
    # Imported on first use: `import kdrun` (the CLI's start-up) stays free of torch and Hydra.
    if name in ("train", "report", "KdrunRunError"):
        from kdrun import api

        return getattr(api, name)
    if name == "KdrunConfigError":
        from kdrun.errors import KdrunConfigError

        return KdrunConfigError
    raise AttributeError(f"module 'kdrun' has no attribute {name!r}")
