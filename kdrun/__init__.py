"""kdrun: a config-driven runner for knowledge-distillation experiments.

From Python: ``from kdrun import train, report`` (see ``kdrun.api``).
"""

import secrets
from typing import Any

from omegaconf import OmegaConf

from kdrun.config.roles import as_typed

__version__ = "0.1.0"
__all__ = ["KdrunConfigError", "KdrunRunError", "__version__", "report", "train"]

# `${kdrun.unique:}` in hydra.run.dir / hydra.sweep.dir: two runs started in the same second get
# different directories. Cached per config like Hydra's `now`, so a sweep's jobs (which copy the
# resolver cache of the sweep's config) agree on one sweep directory.
OmegaConf.register_new_resolver("kdrun.unique", lambda: secrets.token_hex(3), use_cache=True, replace=True)
# `${kdrun.as_typed:${hydra.job.override_dirname}}`: a sweep point's folder says `student=cnn`, as
# typed, not Hydra's `model@student=cnn` (kdrun.config.roles).
OmegaConf.register_new_resolver("kdrun.as_typed", as_typed, replace=True)


def __getattr__(name: str) -> Any:
    # Imported on first use: `import kdrun` (the CLI's start-up) stays free of torch and Hydra.
    if name in ("train", "report", "KdrunRunError"):
        from kdrun import api

        return getattr(api, name)
    if name == "KdrunConfigError":
        from kdrun.errors import KdrunConfigError

        return KdrunConfigError
    raise AttributeError(f"module 'kdrun' has no attribute {name!r}")
