"""Per-channel normalisation statistics: given in the config, or measured on the training split."""

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from kdrun.data.arrays import ArrayImages
from kdrun.data.decode import SKIP_HINT, BadImage
from kdrun.data.memory import to_unit
from kdrun.data.stream import Streamed
from kdrun.errors import KdrunConfigError

Stats = tuple[torch.Tensor, torch.Tensor]  # per-channel mean and std, float32 (1, C, 1, 1)
Measure = Callable[[], Stats]
# Where measured statistics of a streamed split are kept: (spec, measure) -> (mean, std, was_kept).
StatsStore = Callable[[dict[str, Any], Measure], tuple[torch.Tensor, torch.Tensor, bool]]


def streamed_stats(images: Streamed, cfg: DictConfig, store: StatsStore | None) -> tuple[Stats, str]:
    """Statistics of a streamed training split and where they came from (config, store, measured).

    An image folder is measured on ``dataset.stats_sample`` images evenly spaced in the split;
    arrays whole, a chunk at a time (the in-memory path's numbers). With a ``store``, the numbers
    are kept under the split's file fingerprint and the measuring settings, and read back on a rerun.
    """
    given = given_stats(cfg)
    if given is not None:
        return given, "config"
    whole = isinstance(images, ArrayImages)
    count = cfg.get("stats_sample") or 2000

    def measure() -> Stats:
        return channel_stats(images if whole else stats_sample(images, count))

    if store is None:
        return measure(), "measured"
    files = hashlib.sha256()
    images.fingerprint(files, cfg.get("fingerprint") or "stat")
    spec = {
        "files": files.hexdigest(),
        "sample": None if whole else count,
        "geometry": [cfg.image_size, cfg.channels, cfg.get("eval_resize")],
    }
    mean, std, kept = store(spec, measure)
    return (mean, std), "cache" if kept else "measured"


def given_stats(cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``dataset.mean``/``dataset.std`` as float32 (1, C, 1, 1) tensors, or None when not given."""
    if cfg.get("mean") is None:
        return None
    shape = (1, cfg.channels, 1, 1)
    return torch.tensor(list(cfg.mean), dtype=torch.float32).view(shape), torch.tensor(
        list(cfg.std), dtype=torch.float32
    ).view(shape)


def stats_sample(images: Streamed, count: int) -> torch.Tensor:
    """Up to ``count`` training images, evenly spaced in the split's order, decoded: (n, C, S, S).

    A bad file met here is met before training: ``KdrunConfigError`` naming it, or (with
    ``dataset.on_bad_file=skip``) left out of the sample.
    """
    n = len(images)
    index = range(n) if n <= count else np.linspace(0, n - 1, count).round().astype(int)
    decoded = []
    for i in index:
        try:
            decoded.append(images.pixels(int(i)))
        except BadImage as err:
            if not images.skip:
                raise KdrunConfigError("dataset.root", str(err.path), f"{err.reason}; {SKIP_HINT}") from None
    if not decoded:
        folder = str(images.files[0].parent)
        raise KdrunConfigError("dataset.root", folder, "every image file there is unreadable")
    return torch.stack(decoded)


def channel_stats(x: torch.Tensor | ArrayImages, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) std of (N, C, H, W) images, as float32 (1, C, 1, 1) tensors.

    uint8 images and ``ArrayImages`` count as their float32 values in [0, 1] (a chunk at a time). Summed
    in float64 by NumPy in a fixed order: torch's float32 reductions split the work by
    thread count and round differently, which changed the normalised inputs, and with them the
    data fingerprint and every cache key, with ``OMP_NUM_THREADS``.
    """
    channels = x.shape[1]
    count = len(x) * x.shape[2] * x.shape[3]

    def part(start: int) -> np.ndarray:
        if isinstance(x, ArrayImages):
            return x.unit(start, start + chunk).numpy()
        images = x[start : start + chunk]
        return (to_unit(images) if images.dtype == torch.uint8 else images).contiguous().numpy()

    total = np.zeros(channels)
    for start in range(0, len(x), chunk):
        total += part(start).sum(axis=(0, 2, 3), dtype=np.float64)
    mean = total / count
    squares = np.zeros(channels)
    for start in range(0, len(x), chunk):
        squares += np.square(part(start).astype(np.float64) - mean.reshape(1, -1, 1, 1)).sum(axis=(0, 2, 3))
    std = np.sqrt(squares / max(count - 1, 1))
    shape = (1, channels, 1, 1)
    return torch.tensor(mean, dtype=torch.float32).view(shape), torch.tensor(std, dtype=torch.float32).view(
        shape
    ).clamp_min(1e-6)
