"""Zhao et al. 2022, decoupled knowledge distillation (DKD).

The KD loss splits into a target-class term and a non-target-class term:
``KL(p_t || p_s) = TCKD + (1 - p_t[target]) * NCKD`` per sample, where TCKD compares the binary
(target, rest) distributions and NCKD the distributions over the non-target classes. DKD weighs
the two freely (alpha * TCKD + beta * NCKD) instead of letting the teacher's confidence on the
target class suppress NCKD.
"""

import torch
import torch.nn.functional as F


def _kl(log_p_student: torch.Tensor, p_teacher: torch.Tensor, reduction: str) -> torch.Tensor:
    per_sample = (p_teacher * (torch.log(p_teacher.clamp_min(1e-12)) - log_p_student)).sum(dim=-1)
    return per_sample if reduction == "none" else per_sample.mean()


def dkd_terms(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    target: torch.Tensor,
    T: float,
    reduction: str = "batchmean",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, C) logits, (B, C) logits, (B,) labels -> (TCKD, NCKD), each scaled by T^2.

    ``reduction="none"`` returns per-sample values (B,), ``"batchmean"`` their mean.
    """
    # Columns picked with gather, not a boolean mask: a mask's data-dependent shape makes a GPU
    # wait for the host on every step.
    target_col = target[:, None]
    p_s = F.softmax(student_logits / T, dim=-1).gather(1, target_col).squeeze(1)
    p_t = F.softmax(teacher_logits / T, dim=-1).gather(1, target_col).squeeze(1)
    # Binary (target, non-target) distributions.
    b_s = torch.stack([p_s, 1 - p_s], dim=-1)
    b_t = torch.stack([p_t, 1 - p_t], dim=-1)
    tckd = _kl(torch.log(b_s.clamp_min(1e-12)), b_t, reduction)
    # Distributions over the non-target classes only: drop the target column, renormalise. A
    # stable sort of the one-hot rows lists each row's other columns first, in their order.
    classes = student_logits.shape[-1]
    is_target = F.one_hot(target, classes)
    rest = torch.sort(is_target, dim=-1, stable=True).indices[:, : classes - 1]
    log_q_s = F.log_softmax(student_logits.gather(1, rest) / T, dim=-1)
    q_t = F.softmax(teacher_logits.gather(1, rest) / T, dim=-1)
    nckd = _kl(log_q_s, q_t, reduction)
    return tckd * T * T, nckd * T * T
