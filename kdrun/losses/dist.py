"""Huang et al. 2022, DIST: knowledge distillation from a stronger teacher.

Instead of matching probabilities exactly (KL), DIST matches their relations: the Pearson
correlation of the student's and the teacher's class distributions per sample (inter-class) and
of each class's scores across the batch (intra-class).
"""

import torch
import torch.nn.functional as F


def pearson(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Row-wise Pearson correlation: (N, D), (N, D) -> (N,)."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return (a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + eps)


def dist_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C) logits, (B, C) logits -> (inter, intra), each ``T^2 * (1 - mean Pearson)``.

    inter: per sample, across classes; intra: per class, across the batch (as the paper's code).
    """
    p_s = F.softmax(student_logits / T, dim=-1)
    p_t = F.softmax(teacher_logits / T, dim=-1)
    inter = 1 - pearson(p_s, p_t).mean()
    intra = 1 - pearson(p_s.T, p_t.T).mean()
    return inter * T * T, intra * T * T
