"""Hinton et al. 2015: matching temperature-softened outputs."""

import torch
import torch.nn.functional as F


def soft_targets(teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """Teacher probabilities at temperature T: (B, C) logits -> (B, C) probabilities."""
    return F.softmax(teacher_logits / T, dim=-1)


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, T: float) -> torch.Tensor:
    """Soft-target loss T^2 * KL(p_t^T || p_s^T): (B, C) logits, (B, C) logits -> scalar.

    KL takes the student's log-probabilities and the teacher's probabilities, averaged over the
    batch (``batchmean``; ``mean`` would also divide by the class count). The T^2 factor keeps the
    gradient scale of the soft term independent of T (Hinton 2015, section 2), so alpha means the
    same thing at every temperature.
    """
    log_p_student = F.log_softmax(student_logits / T, dim=-1)
    p_teacher = soft_targets(teacher_logits, T)
    return F.kl_div(log_p_student, p_teacher, reduction="batchmean") * (T * T)
