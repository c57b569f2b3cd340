"""The torchvision sets' own files, read without running anything in them, and served per sample.

MNIST and Fashion-MNIST are IDX files, read by ``kdrun.data.idx`` (memory-mapped when raw, so a
streamed set costs the pages its samples touch). CIFAR-10/100 ship as Python
pickles of whole arrays; a pickle can name any function to call while it loads, so they are read
by ``ArraysOnly``, an unpickler that admits only dicts, lists, strings, numbers and NumPy's array
reconstructors, and refuses (naming the file) anything else — whether or not the file is the one
torchvision publishes. ``dataset.download=true`` lets torchvision fetch (and md5-check) the files.
"""

import hashlib
import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from kdrun.data.fingerprint import add_files
from kdrun.data.memory import to_geometry, to_unit
from kdrun.errors import KdrunConfigError

# (module, name) pairs a CIFAR pickle may name: NumPy's array reconstructors, nothing that runs code.
ARRAY_GLOBALS = {
    (module, name)
    for module in (
        "numpy.core.multiarray",
        "numpy._core.multiarray",
        "numpy.core.numeric",
        "numpy._core.numeric",
    )
    for name in ("_reconstruct", "_frombuffer")
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and NumPy arrays; any other global is refused."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in ARRAY_GLOBALS:
            raise pickle.UnpicklingError(
                f"refused to load {module}.{name} (only arrays, lists and dicts are read)"
            )
        return super().find_class(module, name)


def read_pickle(path: Path) -> dict:
    """A CIFAR batch or meta file as a dict (keys as str), through ``ArraysOnly``; errors name the file."""
    try:
        with open(path, "rb") as f:
            entry = ArraysOnly(f, encoding="latin1").load()
    except Exception as err:  # noqa: BLE001  (a refused global, a truncated or foreign file)
        raise KdrunConfigError(
            "dataset.root", str(path), f"not a CIFAR pickle kdrun can read ({err})"
        ) from None
    if not isinstance(entry, dict):
        raise KdrunConfigError("dataset.root", str(path), f"not a CIFAR pickle (a {type(entry).__name__})")
    return entry


def cifar_split(folder: Path, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """The batch files ``names`` under ``folder`` -> uint8 images (N, 3, 32, 32) and int64 labels."""
    images, labels = [], []
    for name in names:
        entry = read_pickle(folder / name)
        data, targets = entry.get("data"), entry.get("labels", entry.get("fine_labels"))
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3072
        ):
            raise KdrunConfigError(
                "dataset.root", str(folder / name), "its 'data' is not an (N, 3072) uint8 array"
            )
        if targets is None or len(targets) != len(data):
            raise KdrunConfigError("dataset.root", str(folder / name), "its labels do not match its images")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(targets, dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


class ArrayImages:
    """uint8 images (N, C, H, W) in an array, served per sample at ``channels`` x ``size`` x ``size``.

    Stands where a streamed image folder has ``FileImages``: a length, a shape, a slice decoded and
    normalised, ``pixels(i)`` for one image in [0, 1], ``take`` for a subset (the array is
    shared, not copied). A memory-mapped array is reopened in each process rather than pickled.
    """

    def __init__(
        self,
        array: np.ndarray,
        files: Sequence[Path],
        channels: int,
        size: int,
        index: np.ndarray | None = None,
    ) -> None:
        self.array, self.files, self.channels, self.size = array, list(files), channels, size
        self.index = np.arange(len(array)) if index is None else np.asarray(index, dtype=np.int64)
        self.mean: torch.Tensor | None = None  # (1, C, 1, 1), set once the statistics are known
        self.std: torch.Tensor | None = None
        self.skip = False  # arrays hold no undecodable files
        self.hashes: dict[Path, str] = {}  # content hashes, shared with the subsets taken

    def __len__(self) -> int:
        return len(self.index)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.index), self.channels, self.size, self.size)

    def take(self, index: Sequence[int]) -> "ArrayImages":
        taken = ArrayImages(
            self.array, self.files, self.channels, self.size, self.index[np.asarray(index, int)]
        )
        taken.mean, taken.std, taken.hashes = self.mean, self.std, self.hashes
        return taken

    def pixels(self, i: int) -> torch.Tensor:
        """Image ``i`` as float32 (C, S, S) in [0, 1], as the in-memory path stores it."""
        image = torch.from_numpy(np.array(self.array[self.index[i]]))  # one image copied out of the map
        return to_geometry(to_unit(image)[None], self.size, self.channels)[0]

    def unit(self, start: int, stop: int) -> torch.Tensor:
        """Images ``start:stop`` as float32 (n, C, S, S) in [0, 1] (one read of those rows)."""
        rows = torch.from_numpy(self.array[self.index[start:stop]])
        return to_geometry(to_unit(rows), self.size, self.channels)

    def __getitem__(self, key: slice) -> torch.Tensor:
        """Normalised images of a slice: (n, C, S, S)."""
        return torch.stack(
            [(self.pixels(i) - self.mean[0]) / self.std[0] for i in range(*key.indices(len(self)))]
        )

    def fingerprint(self, digest: "hashlib._Hash", how: str = "stat") -> None:
        """The files (paths with sizes and modification times, or with the hash of their bytes:
        ``how``) and which of their samples: nothing decoded."""
        add_files(digest, self.files, how, self.hashes)
        digest.update(self.index.tobytes())

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if isinstance(self.array, np.memmap):  # reopened by the receiving process, not copied into the pickle
            state["array"] = (self.array.filename, self.array.offset, self.array.shape)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["array"], tuple):
            filename, offset, shape = state["array"]
            state["array"] = np.memmap(filename, dtype=np.uint8, mode="r", offset=offset, shape=shape)
        self.__dict__.update(state)
