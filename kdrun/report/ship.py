"""``kdrun ship``: the students of a family side by side, the frontier of accuracy against one
cost, and the one to ship under an accuracy floor or a latency budget."""

import shlex
from dataclasses import dataclass, field
from typing import Any

from kdrun.report.family import candidates, teachers
from kdrun.report.frontier import (
    LATENCY_BATCH,
    Candidate,
    check_cost,
    cost_of,
    frontier,
    latency_threads,
    recommend,
)


@dataclass
class Shipping:
    """What ``analyse`` found: the candidates, the frontier on ``cost``, the recommendation."""

    students: list[Candidate]
    teachers: list[Candidate]
    cost: str
    threads: dict[int, int | None]  # batch -> the thread count whose latencies are compared
    points: dict[str, tuple[float, float]]  # name -> (top-1, cost) of the comparable students
    front: list[str]
    chosen: Candidate | None = None
    budget_batch: int = 1  # the batch --max-latency-ms applies to
    notes: list[str] = field(default_factory=list)

    def on_front(self, candidate: Candidate) -> bool:
        return candidate.name in self.front


def _setting(candidate: Candidate) -> str:
    measured = sorted(candidate.latency)
    return ", ".join(f"batch {b} with {t} thread(s)" for b, t in measured) or "no latency"


def analyse(
    runs: list[dict[str, Any]],
    cost: str = "latency1",
    min_accuracy: float | None = None,
    max_latency_ms: float | None = None,
) -> Shipping:
    """The students among ``runs``, their frontier on ``cost`` and (with a floor or a budget) the
    student to ship. ``min_accuracy`` is a fraction; latencies compare only equal settings."""
    check_cost(cost)
    students, notes = candidates(runs)
    threads = {b: latency_threads(students, b) for b in LATENCY_BATCH.values()}
    points: dict[str, tuple[float, float]] = {}
    for s in students:
        figure = cost_of(s, cost, threads.get(LATENCY_BATCH.get(cost, 1)))
        if figure is None:
            what = f"latency at batch {LATENCY_BATCH[cost]} with {threads[LATENCY_BATCH[cost]]} thread(s)"
            what = what if cost in LATENCY_BATCH else cost
            notes.append(f"{s.name}: no {what} (measured: {_setting(s)}); left out of the frontier")
            continue
        points[s.name] = (s.top1, figure)
    batch = LATENCY_BATCH.get(cost, 1)
    latencies = {
        s.name: s.latency[(batch, threads[batch])] for s in students if (batch, threads[batch]) in s.latency
    }
    if max_latency_ms is not None:
        lacking = [s.name for s in students if s.name in points and s.name not in latencies]
        notes += [f"{name}: no latency at batch {batch}; cannot meet --max-latency-ms" for name in lacking]
    chosen = None
    if min_accuracy is not None or max_latency_ms is not None:
        name = recommend(points, latencies, min_accuracy, max_latency_ms)
        chosen = next((s for s in students if s.name == name), None)
    return Shipping(students, teachers(runs), cost, threads, points, frontier(points), chosen, batch, notes)


def human(value: float | None) -> str:
    """12.3k, 1.20M, 3.40G."""
    if value is None:
        return "-"
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= size:
            return f"{value / size:.2f}{unit}"
    return f"{value:g}"


def pct(mean: float | None, std: float | None = None) -> str:
    if mean is None:
        return "-"
    return f"{100 * mean:.2f}" + ("" if std is None else f" ± {100 * std:.2f}")


RUNTIME = {"onnx": "ONNX Runtime", "int8": "ONNX Runtime"}  # the others: PyTorch


def cells(s: Candidate, shipping: Shipping, gpu: str | None) -> list[str]:
    """One table row: name, seeds, top-1s, gain, costs, latencies, frontier mark."""
    gain = None if s.scratch is None else f"{100 * (s.top1 - s.scratch):+.2f}"
    gain = gain if gain is None or s.gain_std is None else f"{gain} ± {100 * s.gain_std:.2f}"
    latency = [s.latency.get((b, shipping.threads[b])) for b in (1, 64)]
    row = [
        s.name,
        str(len(s.seeds)) if s.seeds else "-",
        pct(s.top1, s.top1_std),
        pct(s.scratch, s.scratch_std),
        gain or "-",
        human(s.params),
        "-" if s.size_mb is None else f"{s.size_mb:.3f}",
        human(s.flops),
        *["-" if ms is None else f"{ms:.3f}" for ms in latency],
    ]
    if gpu:
        row += ["-" if s.device_latency.get(b) is None else f"{s.device_latency[b]:.3f}" for b in (1, 64)]
    return [*row, "★" if shipping.on_front(s) else ("teacher" if s.kind == "teacher" else "")]


def header(shipping: Shipping, gpu: str | None) -> list[str]:
    head = ["student", "seeds", "top-1 %", "scratch %", "gain", "params", "MB", "FLOPs", "ms @1", "ms @64"]
    head += [f"{gpu} ms @{b}" for b in (1, 64)] if gpu else []
    return [*head, "frontier"]


def rows(shipping: Shipping) -> tuple[list[str], list[list[str]]]:
    """The table's header and rows: the teachers first (the reference), then the students."""
    gpu = next((s.device for s in shipping.students if s.device), None)
    body = [cells(s, shipping, gpu) for s in [*shipping.teachers, *shipping.students]]
    return header(shipping, gpu), body


def recommendation(shipping: Shipping) -> tuple[str, str] | None:
    """The one line naming the student to ship, and the ``kdrun export`` command for it."""
    s = shipping.chosen
    if s is None:
        return None
    ms = s.latency.get((shipping.budget_batch, shipping.threads[shipping.budget_batch]))
    latency = "-" if ms is None else f"{ms:.3f} ms @{shipping.budget_batch}"
    line = (
        f"ship: {s.name} · top-1 {pct(s.top1, s.top1_std)}% over {len(s.seeds)} seed(s) · "
        f"{human(s.params)} params · {s.size_mb:.3f} MB · {human(s.flops)} FLOPs · {latency} "
        f"({shipping.threads[shipping.budget_batch]} thread(s), CPU) · run {s.run_dir}"
    )
    fmt = "onnx_int8" if s.kind == "int8" else "onnx"  # a PyTorch pick ships as ONNX too
    return line, f"kdrun export {shlex.quote(s.run_dir)} --format {fmt}"
