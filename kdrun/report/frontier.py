"""The accuracy-cost frontier of a family of students: which ones no other one beats on both.

Pure computation over ``Candidate`` records (no torch, no files): ``kdrun.report.family`` builds
them from run folders, ``kdrun.report.frontier_plot`` draws them, ``kdrun ship`` prints them.
"""

import difflib
from dataclasses import dataclass, field

from kdrun.errors import KdrunConfigError

# --cost: what a student costs, and the axis label of each.
COSTS = {
    "latency1": "CPU latency at batch 1 (ms)",
    "latency64": "CPU latency at batch 64 (ms)",
    "size": "size (MB; PyTorch: weights, ONNX: the file)",
    "flops": "FLOPs per image",
    "params": "parameters",
}
LATENCY_BATCH = {"latency1": 1, "latency64": 64}


@dataclass
class Candidate:
    """One student to choose: a trained configuration (its seeds pooled), fp32 or its int8 twin.

    Accuracies are fractions (mean and std over seeds; std None for one seed). ``latency`` maps
    the settings a figure was measured with, ``(batch, threads)``, to its median in ms on the CPU;
    ``device_latency`` the same on the GPU the run trained on (``device`` names it).
    """

    label: str
    kind: str = "fp32"  # fp32 (PyTorch) | onnx (fp32, ONNX Runtime) | int8 (ONNX Runtime) | teacher
    top1: float = 0.0
    top1_std: float | None = None
    scratch: float | None = None  # the same student trained without a teacher (fp32 only)
    scratch_std: float | None = None
    gain_std: float | None = None  # std over the seeds of the paired gain (distilled - scratch)
    seeds: list[int] = field(default_factory=list)
    params: int | None = None
    size_mb: float | None = None
    flops: int | None = None
    latency: dict[tuple[int, int], float] = field(default_factory=dict)
    device: str | None = None
    device_latency: dict[int, float] = field(default_factory=dict)
    run_dir: str = ""  # the seed to ship: the best validation top-1 among the seeds
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.label} · {self.kind}" if self.kind in ("onnx", "int8") else self.label


def check_cost(cost: str) -> str:
    """``cost`` if it is one of ``COSTS``; else ``KdrunConfigError`` naming the closest."""
    if cost in COSTS:
        return cost
    close = difflib.get_close_matches(cost, COSTS, n=1, cutoff=0.4)
    hint = f"did you mean {close[0]}? " if close else ""
    raise KdrunConfigError("--cost", cost, f"{hint}allowed: {', '.join(COSTS)}")


def cost_of(candidate: Candidate, cost: str, threads: int | None) -> float | None:
    """The candidate's figure for ``cost`` (latency: at ``threads``); None where it has none."""
    if cost in LATENCY_BATCH:
        return candidate.latency.get((LATENCY_BATCH[cost], threads)) if threads is not None else None
    return {"size": candidate.size_mb, "flops": candidate.flops, "params": candidate.params}[cost]


def latency_threads(candidates: list[Candidate], batch: int) -> int | None:
    """The thread count most candidates have a latency at ``batch`` for (ties: fewer threads):
    latencies are compared only between figures measured with the same batch and threads."""
    counts: dict[int, int] = {}
    for candidate in candidates:
        for b, threads in candidate.latency:
            if b == batch:
                counts[threads] = counts.get(threads, 0) + 1
    return min(counts, key=lambda t: (-counts[t], t)) if counts else None


def dominates(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """``a`` = (accuracy, cost) beats ``b``: no less accurate, no costlier, and better in one."""
    return a[0] >= b[0] and a[1] <= b[1] and (a[0] > b[0] or a[1] < b[1])


def frontier(points: dict[str, tuple[float, float]]) -> list[str]:
    """The names whose (accuracy, cost) no other point dominates, cheapest first.

    Two points with the same accuracy and cost are both on the frontier (neither beats the other).
    """
    kept = [n for n, p in points.items() if not any(dominates(q, p) for m, q in points.items() if m != n)]
    return sorted(kept, key=lambda n: (points[n][1], -points[n][0], n))


def recommend(
    points: dict[str, tuple[float, float]],
    latencies: dict[str, float],
    min_accuracy: float | None,
    max_latency_ms: float | None,
) -> str | None:
    """The student to ship: the cheapest that reaches ``min_accuracy`` (a fraction) within
    ``max_latency_ms``; with only a latency budget, the most accurate within it. None if none does.

    ``points``: name -> (accuracy, cost); ``latencies``: name -> the latency the budget applies to
    (a name without one cannot meet a budget).
    """
    fits = [
        n
        for n, (acc, _) in points.items()
        if (min_accuracy is None or acc >= min_accuracy)
        and (max_latency_ms is None or latencies.get(n, float("inf")) <= max_latency_ms)
    ]
    if not fits:
        return None
    if min_accuracy is None:
        return min(fits, key=lambda n: (-points[n][0], points[n][1], n))
    return min(fits, key=lambda n: (points[n][1], -points[n][0], n))
