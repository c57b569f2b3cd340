"""Deep mutual learning (Zhang et al. 2018, DML).

k >= 2 peers train together from scratch; each minimises its cross-entropy plus the mean KL to
the other peers' current predictions. No pre-trained teacher. The student is peer 1.
"""

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.losses import mutual_loss
from kdrun.models.asset import Asset
from kdrun.sections import display_name, model_sections
from kdrun.strategies.base import Strategy, register


@register("mutual")
class Mutual(Strategy):
    """The student plus ``strategy.peers``; terms: ``hard`` (sum of CEs), ``peer`` (sum of KLs)."""

    def __init__(self, student: nn.Module, peers: list[nn.Module], T: float, peer_weight: float) -> None:
        super().__init__(student)
        self.peers = nn.ModuleList(peers)
        self.T, self.peer_weight = T, peer_weight

    @classmethod
    def sections(cls, cfg: DictConfig) -> dict[str, DictConfig]:
        for key in ("T", "peer_weight"):
            value = cfg.strategy[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise KdrunConfigError(f"strategy.{key}", value, "must be a number > 0")
        peers = model_sections(cfg, "strategy.peers", "student", minimum=1)
        return {f"strategy.peers[{i}]": section for i, section in enumerate(peers)}

    @classmethod
    def build(cls, assets, student: nn.Module) -> "Mutual":
        cfg = assets.cfg
        sections = list(cls.sections(cfg).values())
        # Peer i starts from seed + i: same-architecture peers must not start identical.
        peers = [assets.build(s, seed=cfg.seed + i + 1) for i, s in enumerate(sections)]
        strategy = cls(student, peers, T=float(cfg.strategy.T), peer_weight=float(cfg.strategy.peer_weight))
        strategy.members = [
            Asset(
                peer, display_name(s), "trained-in-run", role=f"peer_{i + 2}", scratch=(s, cfg.seed + i + 1)
            )
            for i, (peer, s) in enumerate(zip(peers, sections, strict=True))
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
        return logits[0], {"hard": hard, "peer": mutual_loss(list(self.soft_logits(*logits)), self.T)}

    def hparams(self) -> dict:
        return {**super().hparams(), "T": self.T, "peers": 1 + len(self.peers)}
