"""Distillation losses: pure functions of tensors. Nothing here imports the rest of kdrun."""

from kdrun.losses.dkd import dkd_terms
from kdrun.losses.feature import attention_loss, attention_map, hint_loss
from kdrun.losses.kd import kd_loss, soft_targets
from kdrun.losses.mutual import mutual_loss

__all__ = [
    "attention_loss",
    "attention_map",
    "dkd_terms",
    "hint_loss",
    "kd_loss",
    "mutual_loss",
    "soft_targets",
]
