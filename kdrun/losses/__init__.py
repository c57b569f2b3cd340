"""Distillation losses: pure functions of tensors. Nothing here imports the rest of kdrun."""

from kdrun.losses.dkd import dkd_terms
from kdrun.losses.kd import kd_loss, soft_targets
from kdrun.losses.mutual import mutual_loss

__all__ = ["dkd_terms", "kd_loss", "mutual_loss", "soft_targets"]
