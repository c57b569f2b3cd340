"""Does the exported model compute what the PyTorch student computes, on real test inputs?"""

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from kdrun.export.formats import Runner


@torch.no_grad()
def compare(reference: nn.Module, candidate: Runner, batches: Iterable) -> dict[str, Any]:
    """Max |logit difference|, top-1 agreement and both top-1 accuracies over ``(x, y, ...)`` batches."""
    worst, agree, correct_ref, correct_exp, n = 0.0, 0, 0, 0, 0
    for x, y, *_ in batches:
        ref, exp = reference(x), candidate(x).to(torch.float32)
        worst = max(worst, float((ref - exp).abs().max()))
        ref_top1, exp_top1 = ref.argmax(1), exp.argmax(1)
        agree += int((ref_top1 == exp_top1).sum())
        correct_ref += int((ref_top1 == y).sum())
        correct_exp += int((exp_top1 == y).sum())
        n += len(y)
    return {
        "images": n,
        "max_abs_diff": worst,
        "top1_agreement": agree / n,
        "top1_pytorch": correct_ref / n,
        "top1": correct_exp / n,
    }


def int8_verdict(parity: dict[str, Any], max_drop_pts: float, fp32_top1: float) -> str | None:
    """``None`` when the int8 student's top-1 is at most ``max_drop_pts`` points below the fp32
    student's (``fp32_top1``, on the same test images), else the reason in one line."""
    drop = 100 * (fp32_top1 - parity["top1"])
    if not drop <= max_drop_pts + 1e-9:  # also catches NaN
        return f"int8 top-1 drop {drop:.2f} pts > export.max_int8_drop={max_drop_pts:g}"
    return None


def verdict(parity: dict[str, Any], atol: float, min_agreement: float) -> str | None:
    """``None`` when parity holds, else the reason in one line."""
    reasons = []
    if not parity["max_abs_diff"] <= atol:  # also catches NaN
        reasons.append(f"max |logit difference| {parity['max_abs_diff']:.3g} > export.atol={atol:g}")
    if parity["top1_agreement"] < min_agreement:
        reasons.append(
            f"top-1 agreement {parity['top1_agreement']:.4f} < export.min_top1_agreement={min_agreement:g}"
        )
    return "; ".join(reasons) or None
