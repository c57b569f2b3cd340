"""Random augmentation of whole training batches: crop with padding, horizontal flip, colour jitter.

Applied to each training batch after it reaches its device (``TensorDataModule.on_after_batch_transfer``),
with one random draw per sample from torch's generator (seeded by ``fit``). Validation, test,
BatchNorm re-estimation and teacher-logit caching read the stored images unchanged.
"""

from typing import Any

import torch
import torch.nn.functional as F

# ITU-R 601 luma weights: the grey level that saturation jitter moves towards.
LUMA = (0.299, 0.587, 0.114)


class Augment:
    """(B, C, H, W) normalised images -> the same shape, each sample cropped/flipped/jittered anew.

    Works in pixel space: inputs are un-normalised with the data set's ``mean``/``std`` (C values),
    augmented, clamped to [0, 1] after jitter, and normalised again; padding is black.
    """

    def __init__(
        self, mean: list[float], std: list[float], crop_padding: int, flip: bool, color_jitter: float
    ) -> None:
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.crop_padding, self.flip, self.color_jitter = int(crop_padding), bool(flip), float(color_jitter)

    @property
    def settings(self) -> dict[str, Any]:
        """What changes the training inputs (part of cache keys)."""
        return {"crop_padding": self.crop_padding, "flip": self.flip, "color_jitter": self.color_jitter}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean.device != x.device:  # copied to the batches' device once, not every step
            self.mean, self.std = self.mean.to(x.device), self.std.to(x.device)
        mean, std = self.mean, self.std
        pixels = x * std + mean
        if self.crop_padding:
            pixels = random_crop(pixels, self.crop_padding)
        if self.flip:
            flipped = torch.rand(len(x), device=x.device) < 0.5
            pixels = torch.where(flipped.view(-1, 1, 1, 1), pixels.flip(-1), pixels)
        if self.color_jitter:
            pixels = color_jitter(pixels, self.color_jitter)
        return ((pixels - mean) / std).contiguous()


def random_crop(x: torch.Tensor, padding: int) -> torch.Tensor:
    """Pad each side by ``padding`` (black) and cut an H x W window at a random offset per sample."""
    batch, _, height, width = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    top = torch.randint(0, 2 * padding + 1, (batch, 1), device=x.device)
    left = torch.randint(0, 2 * padding + 1, (batch, 1), device=x.device)
    rows = (top + torch.arange(height, device=x.device))[:, :, None]  # (B, H, 1)
    cols = (left + torch.arange(width, device=x.device))[:, None, :]  # (B, 1, W)
    samples = torch.arange(batch, device=x.device)[:, None, None]
    return padded[samples, :, rows, cols].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


def color_jitter(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Scale brightness, contrast and (RGB only) saturation by factors drawn from [1 - s, 1 + s]."""

    def factors() -> torch.Tensor:
        return 1 + (torch.rand(len(x), 1, 1, 1, device=x.device) * 2 - 1) * strength

    x = x * factors()
    grey = _grey(x)
    x = (x - grey.mean(dim=(2, 3), keepdim=True)) * factors() + grey.mean(dim=(2, 3), keepdim=True)
    if x.shape[1] == 3:
        grey = _grey(x)
        x = (x - grey) * factors() + grey
    return x.clamp(0, 1)


def _grey(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] != 3:
        return x.mean(dim=1, keepdim=True)
    weights = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True)
