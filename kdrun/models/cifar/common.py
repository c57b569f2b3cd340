"""Pieces shared by the zoo's models."""

import torch
from torch import nn


class GlobalAvgPool(nn.Module):
    """(B, C, H, W) -> (B, C, 1, 1): the mean over the whole map.

    The references pool a 32 px input's last map with a fixed kernel (``AvgPool2d(8)``,
    ``avg_pool2d(out, 4)``): the same numbers at 32 px, and this also takes 28 px inputs. A mean,
    unlike ``AdaptiveAvgPool2d``, has a deterministic CUDA backward (``trainer.deterministic``).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)
