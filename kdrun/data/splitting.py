"""Cutting a source into train/val/test: the set's own splits, or stratified ones fixed by ``split.seed``."""

import numpy as np
import torch
from omegaconf import DictConfig
from sklearn.model_selection import train_test_split

from kdrun.data.sources import Source
from kdrun.data.stream import Streamed
from kdrun.errors import KdrunConfigError

Images = torch.Tensor | Streamed
Part = tuple[Images, torch.Tensor]


def split_source(source: Source, cfg: DictConfig) -> tuple[Part, Part, Part]:
    """(train, val, test) of ``source``: its own val/test where it has them, else held out of train.

    ``dataset.limit`` keeps the first N training samples after the held-out parts are taken.
    """
    x, y = source.train
    split = cfg.split
    if source.test is None:
        x, test_x, y, test_y = stratified(x, y, split.test, split.seed, "dataset.split.test")
    else:
        test_x, test_y = source.test
    if source.val is not None:  # the set's own validation images (imagefolder's val/)
        val_x, val_y = source.val
    else:
        x, val_x, y, val_y = stratified(x, y, split.val, split.seed, "dataset.split.val")
    if cfg.limit is not None:
        x, y = take(x, range(min(cfg.limit, len(y)))), y[: cfg.limit]
    return (x, y), (val_x, val_y), (test_x, test_y)


def take(x: Images, index) -> Images:
    """The samples of ``x`` at ``index`` (files stay undecoded)."""
    if isinstance(x, Streamed):
        return x.take(list(index))
    return x[torch.as_tensor(list(index), dtype=torch.long)]


def stratified(x: Images, y: torch.Tensor, size: int, seed: int, key: str) -> tuple:
    """``(kept_x, held_x, kept_y, held_y)``: ``size`` samples held out, class proportions kept."""
    if not 0 < size < len(y):
        raise KdrunConfigError(key, size, f"must be between 1 and {len(y) - 1} (samples available)")
    try:
        keep, held = train_test_split(
            np.arange(len(y)), test_size=size, stratify=y.numpy(), random_state=seed
        )
    except ValueError as err:  # too few samples per class for a stratified split
        raise KdrunConfigError(key, size, str(err)) from None
    return take(x, keep), take(x, held), y[torch.as_tensor(keep)], y[torch.as_tensor(held)]
