"""Zhao et al. 2022, decoupled knowledge distillation (DKD).

The KD loss splits into a target-class term and a non-target-class term:
``KL(p_t || p_s) = TCKD + (1 - p_t[target]) * NCKD`` per sample, where TCKD compares the binary
(target, rest) distributions and NCKD the distributions over the non-target classes. DKD weighs
the two freely (alpha * TCKD + beta * NCKD) instead of letting the teacher's confidence on the
target class suppress NCKD.
"""

import torch
import torch.nn.functional as F


def _binary_log_probs(logits: torch.Tensor, target_mask: torch.Tensor, T: float) -> torch.Tensor:
    """(B, C) logits -> (B, 2) log-probabilities of (target, every other class), in log space.

    The rest mass is a log-sum-exp over the non-target classes, not ``1 - p_target``: in float32
    that difference cancels when the target class is far ahead (a margin of 20 logits at T=1),
    which biases TCKD by percent and its gradient by more.
    """
    log_p = F.log_softmax(logits / T, dim=-1)
    log_target = log_p.masked_fill(~target_mask, float("-inf")).logsumexp(dim=-1)
    log_rest = log_p.masked_fill(target_mask, float("-inf")).logsumexp(dim=-1)
    return torch.stack([log_target, log_rest], dim=-1)


def _kl_log(log_p_student: torch.Tensor, log_p_teacher: torch.Tensor, reduction: str) -> torch.Tensor:
    p_teacher = log_p_teacher.exp()
    # 0 * log 0 = 0: a class the teacher gives no mass contributes nothing (and no NaN).
    terms = torch.where(p_teacher > 0, p_teacher * (log_p_teacher - log_p_student), 0.0)
    per_sample = terms.sum(dim=-1)
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
    target_mask = F.one_hot(target, student_logits.shape[-1]).bool()
    # Binary (target, non-target) distributions.
    tckd = _kl_log(
        _binary_log_probs(student_logits, target_mask, T),
        _binary_log_probs(teacher_logits, target_mask, T),
        reduction,
    )
    # Distributions over the non-target classes only: drop the target column, renormalise. The
    # columns are picked with gather, not a boolean mask (whose data-dependent shape makes a GPU
    # wait for the host every step): a stable sort of the one-hot rows lists the others in order.
    rest = torch.sort(target_mask.byte(), dim=-1, stable=True).indices[:, :-1]
    log_q_s = F.log_softmax(student_logits.gather(1, rest) / T, dim=-1)
    log_q_t = F.log_softmax(teacher_logits.gather(1, rest) / T, dim=-1)
    nckd = _kl_log(log_q_s, log_q_t, reduction)
    return tckd * T * T, nckd * T * T
