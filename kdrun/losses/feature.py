"""Feature-map distillation: FitNets hints (Romero 2015) and attention transfer (Zagoruyko 2017)."""

import torch
import torch.nn.functional as F


def hint_loss(student_feature: torch.Tensor, teacher_feature: torch.Tensor) -> torch.Tensor:
    """Mean squared error between a (regressed) student feature and the teacher's, same shape -> scalar."""
    return F.mse_loss(student_feature, teacher_feature)


def attention_map(feature: torch.Tensor, p: float = 2.0) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W): mean over channels of |a|^p, flattened and L2-normalised per sample."""
    return F.normalize(feature.abs().pow(p).mean(dim=1).flatten(1), dim=1)


def attention_loss(
    student_feature: torch.Tensor, teacher_feature: torch.Tensor, p: float = 2.0
) -> torch.Tensor:
    """Mean squared distance of the normalised attention maps; the student's map is resized to the
    teacher's H x W first. (B, Cs, Hs, Ws), (B, Ct, Ht, Wt) -> scalar."""
    if student_feature.shape[-2:] != teacher_feature.shape[-2:]:
        student_feature = F.interpolate(
            student_feature, size=teacher_feature.shape[-2:], mode="bilinear", align_corners=False
        )
    return (attention_map(student_feature, p) - attention_map(teacher_feature, p)).pow(2).mean()
