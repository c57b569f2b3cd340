"""Deep mutual learning (Zhang et al. 2018, DML).

k >= 2 peers train together from scratch; each minimises its cross-entropy plus the mean KL to
the other peers' current predictions. No pre-trained teacher. The student is peer 1.
"""

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from kdrun.config.schema import MISSING, number
from kdrun.losses import mutual_loss
from kdrun.models.asset import Asset
from kdrun.models.sections import display_name, model_sections
from kdrun.strategies.base import Options, Strategy, register


@dataclass
class MutualOptions(Options):
    peers: Any = MISSING  # student config names or mappings (kdrun.models.sections)
    peer_temperature: float = number(MISSING, gt=0)
    peer_weight: float = number(MISSING, gt=0)


@register("mutual")
class Mutual(Strategy):
    """The student plus ``strategy.peers``; terms: ``hard`` (sum of CEs), ``peer`` (sum of KLs)."""

    options = MutualOptions

    def __init__(
        self, student: nn.Module, peers: list[nn.Module], peer_temperature: float, peer_weight: float
    ) -> None:
        super().__init__(student)
        self.peers = nn.ModuleList(peers)
        self.peer_temperature, self.peer_weight = peer_temperature, peer_weight

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        peers = model_sections(cfg, "strategy.peers", "student", minimum=1)
        return {f"strategy.peers[{i}]": section for i, section in enumerate(peers)}

    @classmethod
    def build(cls, assets, student: nn.Module) -> "Mutual":
        cfg = assets.cfg
        sections = list(cls.sections(cfg).values())
        # Peer i starts from seed + i: same-architecture peers must not start identical.
        seeds = [assets.seed + i + 1 for i in range(len(sections))]
        peers = [assets.build(s, seed=seed) for s, seed in zip(sections, seeds, strict=True)]
        options = cfg.strategy
        temperature, weight = float(options.peer_temperature), float(options.peer_weight)
        strategy = cls(student, peers, peer_temperature=temperature, peer_weight=weight)
        strategy.members = [
            Asset(peer, display_name(s), "trained-in-run", role=f"peer_{i + 2}", scratch=(s, seed))
            for i, (peer, s, seed) in enumerate(zip(peers, sections, seeds, strict=True))
        ]
        return strategy

    @property
    def trained(self) -> list[nn.Module]:
        return [self.student, *self.peers]

    @property
    def weights(self) -> dict[str, float]:
        return {"hard": 1.0, "peer": self.peer_weight}

    def loss_terms(
        self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = [model(x) for model in self.trained]
        hard = torch.stack([F.cross_entropy(z, y) for z in logits]).sum()
        peer = mutual_loss(list(self.soft_logits(*logits)), self.peer_temperature)
        return logits[0], {"hard": hard, "peer": peer}

    def hparams(self) -> dict:
        return {**super().hparams(), "peer_temperature": self.peer_temperature, "peers": 1 + len(self.peers)}
