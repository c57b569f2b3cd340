"""Normalisation statistics measured on a streamed training split, kept as a cache entry.

The entry (kind ``stats``) is keyed by the split's files (paths, sizes, modification times, which
samples) and how they were measured, so a rerun reads the numbers instead of decoding the sample
again, and a changed file, split or image size measures anew.
"""

import json
from pathlib import Path
from typing import Any

import torch

from kdrun.cache.store import Cache
from kdrun.data.stats import Measure
from kdrun.files import write_atomic

FILE = "stats.json"


def cached_stats(cache: Cache):
    """A ``kdrun.data.stats.StatsStore`` over ``cache``: ``(spec, measure) -> (mean, std, was_cached)``."""

    def store(spec: dict[str, Any], measure: Measure) -> tuple[torch.Tensor, torch.Tensor, bool]:
        def build(folder: Path) -> None:
            mean, std = measure()
            values = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
            write_atomic(folder / FILE, json.dumps(values))

        entry, cached = cache.get_or_build("stats", "normalization", spec, build)
        values = json.loads((entry / FILE).read_text())
        shape = (1, -1, 1, 1)
        mean, std = (torch.tensor(values[k], dtype=torch.float32).view(shape) for k in ("mean", "std"))
        return mean, std, cached

    return store
