"""Several teachers as one: their softened probabilities combined per sample."""

import copy

import torch
import torch.nn.functional as F
from torch import nn

WEIGHTINGS = ("mean", "fixed", "confidence")


class TeacherEnsemble(nn.Module):
    """Combine members' probabilities at temperature ``T``: ``p = sum_k w_k softmax(z_k / T)``.

    ``weighting``: ``mean`` (w_k = 1/K), ``fixed`` (the given ``weights``, normalised) or
    ``confidence`` (per sample, w_k proportional to member k's top-class probability at T = 1:
    a teacher sure of a sample counts more there). The output is ``T * log p``, logits whose
    softmax at ``T`` is exactly ``p``, so it drops into any loss that takes teacher logits; its
    argmax is the ensemble's prediction.
    """

    def __init__(
        self, members: list[nn.Module], T: float, weighting: str = "mean", weights: list[float] | None = None
    ) -> None:
        super().__init__()
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting={weighting!r}: allowed: {', '.join(WEIGHTINGS)}")
        self.members = nn.ModuleList(members)
        self.T, self.weighting = T, weighting
        fixed = torch.tensor(weights if weighting == "fixed" else [1.0] * len(members), dtype=torch.float32)
        self.register_buffer("fixed", fixed / fixed.sum(), persistent=False)

    def extra_repr(self) -> str:
        # Part of the module's identity (the teacher-logit cache key hashes the repr): none of
        # these are in the state_dict.
        weights = [round(w, 6) for w in self.fixed.tolist()]
        return f"T={self.T:g}, weighting={self.weighting}, weights={weights}"

    def at_temperature(self, T: float) -> "TeacherEnsemble":
        """The same members combined at another temperature (T = 1: the ensemble's prediction)."""
        clone = copy.copy(self)  # shares the member modules and buffers
        clone.T = T
        return clone

    def member_weights(self, logits: torch.Tensor) -> torch.Tensor:
        """(K, B, C) member logits -> (K, B, 1) weights that sum to 1 over K."""
        if self.weighting == "confidence":
            confidence = F.softmax(logits, dim=-1).amax(dim=-1, keepdim=True)
            return confidence / confidence.sum(dim=0, keepdim=True)
        return self.fixed.view(-1, 1, 1).expand(-1, logits.shape[1], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.stack([member(x) for member in self.members])
        probs = F.softmax(logits / self.T, dim=-1)
        combined = (self.member_weights(logits) * probs).sum(dim=0)
        return self.T * torch.log(combined.clamp_min(1e-12))
