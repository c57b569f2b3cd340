"""A ready model and where it came from: what the phases hand to strategies and the report shows."""

from dataclasses import dataclass, field

from omegaconf import DictConfig
from torch import nn


@dataclass
class Asset:
    """A trained, cached, loaded or fresh model, with its provenance.

    ``role`` names its row in the report (``teacher``, ``assistant_1``, ``peer_2``) when it has
    one. ``scratch`` = (section, seed) of the same architecture trained without distillation, for
    models this run distilled: the report gives their ``kd_gain_top1`` against it.
    """

    model: nn.Module
    name: str
    source: str  # checkpoint | cache | trained | trained-in-run | ensemble
    path: str | None = None
    role: str = ""
    members: list["Asset"] = field(default_factory=list)  # an ensemble's members
    scratch: tuple[DictConfig, int] | None = None
