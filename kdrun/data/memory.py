"""8-bit images held in memory as uint8 and normalised a batch at a time (``dataset.storage=memory``).

A float32 copy costs 4 bytes a pixel; the sets decoded from 8-bit files or arrays (image folders,
MNIST, CIFAR) are stored as their bytes and turned into the same float32 inputs per batch:
``(x / 255 - mean) / std``, the operations the float32 path applies to the whole set, so every
batch is bitwise the tensor that path would hold.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 in [0, 1]: the one conversion of every 8-bit source."""
    return x.float().div_(255)


def to_geometry(x: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """(N, C, H, W) float -> (N, channels, size, size): resized, grey replicated to RGB or RGB averaged."""
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if x.shape[1] != channels:
        x = x.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1)
    return x.contiguous()


class ByteImages:
    """(N, C, S, S) uint8 images and the per-channel ``mean``/``std`` that normalise them.

    Stands where the float32 path holds its normalised tensor: it has a length and a shape, and
    indexing (a slice, an index tensor or list) returns normalised float32 images.
    """

    def __init__(self, pixels: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> None:
        if pixels.dtype != torch.uint8 or pixels.ndim != 4:
            raise ValueError(f"expected (N, C, H, W) uint8 images, got {pixels.dtype} {tuple(pixels.shape)}")
        self.bytes, self.mean, self.std = pixels, mean, std

    def __len__(self) -> int:
        return len(self.bytes)

    @property
    def shape(self) -> torch.Size:
        return self.bytes.shape

    @property
    def nbytes(self) -> int:
        """Memory held by the stored pixels (a grey set shown as RGB is stored once)."""
        return self.bytes.untyped_storage().nbytes()

    def __getitem__(self, key: slice | int | torch.Tensor | Sequence[int]) -> torch.Tensor:
        """The images at ``key``, normalised: (n, C, S, S) float32 ((C, S, S) for an int)."""
        # In place on the fresh float copy: the same operations, without two more allocations.
        if isinstance(key, int):
            return to_unit(self.bytes[key]).sub_(self.mean[0]).div_(self.std[0])
        if not isinstance(key, slice):
            key = torch.as_tensor(key, dtype=torch.long)
        return to_unit(self.bytes[key]).sub_(self.mean).div_(self.std)

    def pixels(self, i: int) -> torch.Tensor:
        """Image ``i`` as float32 (C, S, S) in [0, 1], before normalisation."""
        return to_unit(self.bytes[i])

    def take(self, index: Sequence[int] | range) -> "ByteImages":
        """The images at ``index``, still stored as bytes."""
        return ByteImages(self.bytes[torch.as_tensor(list(index), dtype=torch.long)], self.mean, self.std)

    def chunks(self, size: int = 1024):
        """Normalised float32 images, ``size`` at a time, in order (hashing without a float copy)."""
        for start in range(0, len(self), size):
            yield self[start : start + size]
