"""Distillation losses: pure functions of tensors. Nothing here imports the rest of kdrun."""

from kdrun.losses.kd import kd_loss, soft_targets

__all__ = ["kd_loss", "soft_targets"]
