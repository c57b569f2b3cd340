"""Images read from their files per sample (``dataset.storage=stream``) and the per-sample dataset.

``FileImages`` stands where the in-memory path holds an (N, C, S, S) tensor: it has a length and
a shape, and a slice decodes those images (normalised) — enough for the probes that look at two
inputs. Training and evaluation read it through ``Samples`` in DataLoader worker processes.
"""

import hashlib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from kdrun.data.arrays import ArrayImages
from kdrun.data.decode import SKIP_HINT, BadImage, decode, fit
from kdrun.data.fingerprint import add_files
from kdrun.data.memory import ByteImages
from kdrun.data.transforms import to_pixels


class FileImages:
    """Image files at ``size`` x ``size`` (squashed, or shorter side ``eval_resize`` + centre crop)."""

    def __init__(
        self, files: Sequence[Path], channels: int, size: int, eval_resize: int | None, skip: bool
    ) -> None:
        self.files, self.channels, self.size = list(files), channels, size
        self.eval_resize, self.skip = eval_resize, skip
        self.mean: torch.Tensor | None = None  # (1, C, 1, 1), set once the statistics are known
        self.std: torch.Tensor | None = None
        self.hashes: dict[Path, str] = {}  # content hashes, shared with the subsets taken
        # Files found bad while a run reads them (``skip``): set in loader workers, so in shared memory.
        self.unreadable = torch.zeros(len(self.files), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.files)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.files), self.channels, self.size, self.size)

    def take(self, index: Sequence[int]) -> "FileImages":
        """The images at ``index``, still undecoded."""
        taken = FileImages(
            [self.files[int(i)] for i in index], self.channels, self.size, self.eval_resize, self.skip
        )
        taken.mean, taken.std, taken.hashes = self.mean, self.std, self.hashes
        return taken

    def __getitem__(self, key: slice) -> torch.Tensor:
        """Decoded and normalised images of a slice: (n, C, S, S)."""
        return torch.stack([self.normalise(self.pixels(i)) for i in range(*key.indices(len(self.files)))])

    def original(self, i: int) -> Any:
        """Image ``i`` decoded at its own size (PIL, L or RGB)."""
        return decode(self.files[i], self.channels)

    def fit(self, image: Any) -> Any:
        return fit(image, self.size, self.eval_resize)

    def pixels(self, i: int) -> torch.Tensor:
        """Image ``i`` as float (C, S, S) in [0, 1], exactly as the in-memory path stores it."""
        return to_pixels(self.fit(self.original(i)))

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean[0]) / self.std[0]

    def skipped(self) -> list[dict[str, str]]:
        """The files a run found bad while reading them and left out (``dataset.on_bad_file=skip``)."""
        return [
            {"path": str(path), "reason": "unreadable when the run read it; left out"}
            for path, bad in zip(self.files, self.unreadable.tolist(), strict=True)
            if bad
        ]

    def fingerprint(self, digest: "hashlib._Hash", how: str = "stat") -> None:
        """Each file's path with its size and modification time (``stat``) or the hash of its bytes
        (``content``): a changed file changes it; nothing is decoded."""
        add_files(digest, self.files, how, self.hashes)


Streamed = FileImages | ArrayImages  # images kept where they are and read per sample


class Samples(Dataset):
    """``(x, y, index)`` per sample: normalised input, label, index into the split.

    ``augment``: v2 transforms applied to training samples (on the image before normalisation).
    Files are decoded here, in the loader's worker processes; a file that turns out bad fails with
    its path, or with ``skip`` is replaced by the next good sample (a warning names it).
    """

    def __init__(
        self,
        images: Streamed | ByteImages | torch.Tensor,
        labels: torch.Tensor,
        mean: torch.Tensor,
        std: torch.Tensor,
        augment: list[Callable] | None = None,
    ) -> None:
        from torchvision.transforms import v2

        self.images, self.labels = images, labels
        self.mean, self.std = mean[0], std[0]  # (C, 1, 1)
        self.augment = v2.Compose(augment) if augment else None
        # A random-resized crop makes its own S x S view of the whole original image.
        self.from_original = bool(augment) and isinstance(augment[0], v2.RandomResizedCrop)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        for offset in range(len(self.labels)):
            i = (index + offset) % len(self.labels)
            try:
                return self._sample(i), int(self.labels[i]), i
            except BadImage as err:
                if not self.images.skip:
                    raise RuntimeError(f"{err.path}: {err.reason}; {SKIP_HINT}") from None
                if isinstance(self.images, FileImages):  # counted in results.json
                    self.images.unreadable[i] = True
                warnings.warn(f"skipped a bad image while reading: {err.path}: {err.reason}", stacklevel=1)
        raise RuntimeError("every image of this split is unreadable")

    def _sample(self, i: int) -> torch.Tensor:
        if isinstance(self.images, torch.Tensor):
            if self.augment is None:
                return self.images[i]
            pixels = self.images[i] * self.std + self.mean  # back to [0, 1] for the transforms
            return (to_pixels(self.augment(pixels.clamp(0, 1))) - self.mean) / self.std
        if self.augment is None or isinstance(self.images, ByteImages | ArrayImages):
            pixels = self.images.pixels(i)
            if self.augment is not None:  # on the stored S x S image
                pixels = to_pixels(self.augment(pixels))
        elif self.from_original:
            pixels = to_pixels(self.augment(self.images.original(i)))
        else:
            pixels = to_pixels(self.augment(self.images.fit(self.images.original(i))))
        return (pixels - self.mean) / self.std
