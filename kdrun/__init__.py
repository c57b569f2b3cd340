"""kdrun: a config-driven runner for knowledge-distillation experiments."""

import secrets

from omegaconf import OmegaConf

__version__ = "0.1.0"

# `${kdrun.unique:}` in hydra.run.dir / hydra.sweep.dir: two runs started in the same second get
# different directories. Cached per config like Hydra's `now`, so a sweep's jobs (which copy the
# resolver cache of the sweep's config) agree on one sweep directory.
OmegaConf.register_new_resolver("kdrun.unique", lambda: secrets.token_hex(3), use_cache=True, replace=True)
