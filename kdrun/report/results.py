"""results.json: written once, atomically; everything downstream reads it, never the logs."""

import json
import math
from pathlib import Path
from typing import Any

from kdrun.files import write_atomic


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON through ``write_atomic``: readers never see half a file, a link is not followed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def deltas(
    teacher: dict[str, Any] | None, baseline: dict[str, Any], student: dict[str, Any]
) -> dict[str, Any]:
    """The comparisons a user reads first.

    ``kd_gain_top1`` = student - scratch baseline (same architecture, seed and budget);
    ``gap_to_teacher_top1`` = teacher - student; ratios are student / teacher; speed-ups are
    teacher latency / student latency at each measured batch size, only between different
    architectures (``None`` for a teacher of the student's own architecture). Without a teacher (mutual
    learning, a soft-label file) the teacher comparisons are ``None``.
    """
    t = teacher or {}

    def vs_teacher(fn: Any) -> Any:
        return fn() if teacher else None

    out: dict[str, Any] = {
        "kd_gain_top1": student["top1"] - baseline["top1"],
        "gap_to_teacher_top1": vs_teacher(lambda: t["top1"] - student["top1"]),
        "params_ratio": vs_teacher(lambda: _ratio(student["params"], t["params"])),
        "flops_ratio": vs_teacher(lambda: _ratio(student["flops"], t["flops"])),
        "size_ratio": vs_teacher(lambda: _ratio(student["size_mb"], t["size_mb"])),
        "latency_speedup": {
            batch: vs_teacher(lambda b=batch: _ratio(t["latency_ms"][b], student["latency_ms"][b]))
            if _different_architectures(t, student)
            else None
            for batch in student["latency_ms"]
        },
    }
    if "top5" in student:
        out["kd_gain_top5"] = student["top5"] - baseline["top5"]
        out["gap_to_teacher_top5"] = vs_teacher(lambda: t["top5"] - student["top5"])
    return {k: _clean(v) for k, v in out.items()}


def paired_gain(images: int, student_only: int, baseline_only: int) -> dict[str, Any]:
    """How much of ``kd_gain_top1`` the test images alone could explain.

    The gain is the mean over the test images of (student right) - (scratch right), each -1, 0 or
    1; only the images where exactly one of the two is right count. ``kd_gain_top1_se`` is the
    standard error of that mean; ``p_value`` is McNemar's exact test (two-sided binomial test of
    ``student_only`` among the disagreements): the chance of a split at least this uneven if
    neither model were better on these images. A new seed adds its own variation on top.
    """
    disagree = student_only + baseline_only
    mean = (student_only - baseline_only) / images if images else 0.0
    variance = disagree / images - mean**2 if images else 0.0
    p_value = 1.0
    if disagree:
        from scipy.stats import binomtest  # scikit-learn's dependency; imported when used

        p_value = float(binomtest(student_only, disagree, 0.5).pvalue)
    return {
        "kd_gain_top1_se": math.sqrt(max(variance, 0.0) / images) if images else None,
        "kd_gain_test": {
            "images": images,
            "student_only": student_only,
            "baseline_only": baseline_only,
            "p_value": p_value,
        },
    }


def _different_architectures(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """A speed-up between two measurements of one architecture would report timing noise."""
    return a.get("arch_id") is None or a.get("arch_id") != b.get("arch_id")


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value
