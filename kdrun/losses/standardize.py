"""Sun et al. 2024, logit standardisation in knowledge distillation."""

import torch


def standardize(logits: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Z-score each row: (B, C) logits -> (B, C), mean 0 and (unbiased) standard deviation 1.

    Applied to the student's and the teacher's logits before the temperature, it lets the
    student match the teacher's logit *relations* without also matching their range and offset
    (the paper's ``normalize``: ``(z - mean) / (eps + std)``, ``torch.std``'s unbiased estimate).
    """
    mean = logits.mean(dim=-1, keepdim=True)
    std = logits.std(dim=-1, keepdim=True)
    return (logits - mean) / (eps + std)
