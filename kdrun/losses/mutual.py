"""Zhang et al. 2018, deep mutual learning: every peer learns from the others' predictions."""

import torch

from kdrun.losses.kd import kd_loss


def mutual_loss(peer_logits: list[torch.Tensor], T: float = 1.0) -> torch.Tensor:
    """k >= 2 peers' (B, C) logits -> sum over peers of the mean KL to each other peer.

    Peer i's term is ``1/(k-1) * sum_{j != i} T^2 KL(p_j^T || p_i^T)``, with p_j detached: each
    peer is pulled towards the others, never the others towards it through this term.
    """
    k = len(peer_logits)
    total = peer_logits[0].new_zeros(())
    for i, logits in enumerate(peer_logits):
        others = [kd_loss(logits, peer_logits[j].detach(), T) for j in range(k) if j != i]
        total = total + torch.stack(others).mean()
    return total
