"""MNIST-format IDX files: found in either layout, raw or gzip-compressed, checked, read.

Two layouts are read: torchvision's (``root/<Set>/raw/train-images-idx3-ubyte``, what
``dataset.download=true`` writes) and flat (the four files directly in ``root``, as Zalando and
LeCun publish them and as Debian's ``dataset-fashion-mnist`` installs them in
``/usr/share/datasets/fashion-mnist``). Each file may be raw or ``.gz``. A raw file is
memory-mapped (a streamed set costs the pages its samples touch); a ``.gz`` is decompressed into
memory once. Every file's magic number (unsigned bytes, its dimension count) and size (the header's
shape) are checked; a bad file is one line naming it.
"""

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from kdrun.errors import DataNotFound, KdrunConfigError

# (images, labels) of the training and the test split, in that order.
NAMES = [(f"{p}-images-idx3-ubyte", f"{p}-labels-idx1-ubyte") for p in ("train", "t10k")]
# A set's Debian package, named in the error when its files are nowhere.
PACKAGES = {"FashionMNIST": "dataset-fashion-mnist"}


def _candidates(folder: Path, set_name: str, name: str) -> list[Path]:
    """Where ``name`` may lie for ``folder``: torchvision's layout, then flat; raw before ``.gz``."""
    return [place / file for place in (folder / set_name / "raw", folder) for file in (name, f"{name}.gz")]


def find(folder: Path, set_name: str) -> list[Path] | None:
    """The four IDX files of ``set_name`` under ``folder`` (train images, labels, test images,
    labels), each the first that exists of its candidates; None if any of the four is missing."""
    found = []
    for name in (n for pair in NAMES for n in pair):
        path = next((p for p in _candidates(folder, set_name, name) if p.is_file()), None)
        if path is None:
            return None
        found.append(path)
    return found


def not_found(set_name: str, folders: list[Path], key: str, value: object) -> DataNotFound:
    """The one line for a set found in none of ``folders``: both ways to get it."""
    where = ", ".join(str(f) for f in folders)
    package = PACKAGES.get(set_name)
    ways = f"`apt-get install {package}` (Debian, offline), or " if package else ""
    return DataNotFound(
        key,
        value,
        f"{set_name}'s IDX files (train-images-idx3-ubyte[.gz] and the other three) are not in "
        f"{where}; get them with {ways}dataset.download=true where the internet is reachable, "
        "or point dataset.root at the folder that holds them",
    )


def read(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes with ``ndim`` dimensions: memory-mapped if raw, in memory if
    ``.gz``; ``KdrunConfigError`` (naming the file) for a wrong magic number, size or a broken gzip."""
    if path.suffix != ".gz":
        size = os.stat(path).st_size
        with open(path, "rb") as f:
            header = f.read(4 + 4 * ndim)
        shape = _shape(path, header, ndim, size)
        return np.memmap(path, dtype=np.uint8, mode="r", offset=len(header), shape=shape)
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as err:  # not gzip, truncated, corrupt
        raise KdrunConfigError("dataset.root", str(path), f"not a readable gzip file ({err})") from None
    shape = _shape(path, data[: 4 + 4 * ndim], ndim, len(data))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _shape(path: Path, header: bytes, ndim: int, size: int) -> tuple[int, ...]:
    """The shape a header declares, checked against the magic number and the data's ``size``."""
    if len(header) < 4 + 4 * ndim or header[:4] != bytes((0, 0, 0x08, ndim)):
        raise KdrunConfigError(
            "dataset.root",
            str(path),
            f"not an IDX file of {ndim}-D unsigned bytes (magic {header[:4].hex() or 'none'}, "
            f"expected {bytes((0, 0, 0x08, ndim)).hex()})",
        )
    shape = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if size != len(header) + int(np.prod(shape)):
        raise KdrunConfigError("dataset.root", str(path), f"{size} bytes, but its header says {shape}")
    return shape


def read_set(files: list[Path]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The four files of ``find`` -> [(train images (N, 1, H, W), labels), (test ...)], checked
    to agree: as many labels as images in each split."""
    splits = []
    for images_path, labels_path in (files[:2], files[2:]):
        images, labels = read(images_path, 3), read(labels_path, 1)
        if len(images) != len(labels):
            raise KdrunConfigError(
                "dataset.root",
                str(labels_path),
                f"{len(labels)} labels for the {len(images)} images of {images_path.name}",
            )
        splits.append((images.reshape(len(images), 1, *images.shape[1:]), np.asarray(labels, np.int64)))
    return splits
