"""Distillation losses: pure functions of tensors. Nothing here imports the rest of kdrun."""

from kdrun.losses.crd import contrast_nce_loss
from kdrun.losses.dist import dist_terms, pearson
from kdrun.losses.dkd import dkd_terms
from kdrun.losses.feature import attention_loss, attention_map, hint_loss
from kdrun.losses.kd import kd_loss, soft_targets
from kdrun.losses.mutual import mutual_loss
from kdrun.losses.standardize import standardize

__all__ = [
    "attention_loss",
    "attention_map",
    "contrast_nce_loss",
    "dist_terms",
    "dkd_terms",
    "hint_loss",
    "kd_loss",
    "mutual_loss",
    "pearson",
    "soft_targets",
    "standardize",
]
