"""frontier.png: top-1 against one cost for every student, the frontier drawn through the ones no
other student beats, an arrow from each student's scratch top-1 to its distilled top-1 (the gain
KD buys at that size), error bars over the seeds, exported twins (fp32 and int8 ONNX) beside
their students, and the teacher as a horizontal line."""

from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kdrun.files import atomic_path
from kdrun.report.frontier import COSTS, LATENCY_BATCH, Candidate, cost_of
from kdrun.report.ship import Shipping, human

MARKERS = {"onnx": "s", "int8": "D"}  # exported twins; a PyTorch student is a circle
FRONTIER_LABEL = "frontier: no other student is\nboth more accurate and cheaper"


UNITS = {"latency1": " ms @1", "latency64": " ms @64", "size": " MB", "flops": " FLOPs", "params": " params"}


def axis_label(shipping: Shipping, log: bool) -> str:
    scale = "; log scale" if log else ""
    if shipping.cost in LATENCY_BATCH:
        batch = LATENCY_BATCH[shipping.cost]
        return f"CPU latency at batch {batch} (ms, {shipping.threads[batch]} thread(s){scale})"
    return COSTS[shipping.cost] + (" (log scale)" if log else "")


def _teacher_line(ax: Axes, shipping: Shipping) -> None:
    """A horizontal line at each teacher's top-1, its cost in the legend (it is off the chart)."""
    for i, teacher in enumerate(shipping.teachers):
        figure = cost_of(teacher, shipping.cost, shipping.threads.get(LATENCY_BATCH.get(shipping.cost, 1)))
        cost = "" if figure is None else f" at {human(round(figure, 3))}{UNITS[shipping.cost]}"
        label = f"{teacher.label}: {100 * teacher.top1:.2f}%{cost}"
        ax.axhline(100 * teacher.top1, color="black", ls="--", lw=1, alpha=0.7 - 0.2 * i, label=label)


def _errorbar(ax: Axes, x: float, mean: float, std: float | None, **style: Any) -> None:
    ax.errorbar([x], [100 * mean], yerr=None if std is None else [100 * std], capsize=3, **style)


def _student(ax: Axes, x: float, s: Candidate, colour: str) -> None:
    """Scratch and distilled points with their seed error bars, joined by an arrow; or an exported
    twin (ONNX square, int8 diamond)."""
    if s.kind in MARKERS:
        _errorbar(ax, x, s.top1, s.top1_std, fmt=MARKERS[s.kind], color=colour, ms=6)
        return
    if s.scratch is not None:
        _errorbar(ax, x, s.scratch, s.scratch_std, fmt="o", mfc="white", color=colour, ms=6)
        arrow = {"arrowstyle": "->", "color": colour, "lw": 1.3}
        ax.annotate("", xy=(x, 100 * s.top1), xytext=(x, 100 * s.scratch), arrowprops=arrow)
    _errorbar(ax, x, s.top1, s.top1_std, fmt="o", color=colour, ms=7, zorder=3)  # over a zero gain


def _points(ax: Axes, shipping: Shipping) -> dict[str, tuple[float, float]]:
    """Every student with a figure for the cost, labelled; exported twins joined to their student."""
    threads = shipping.threads.get(LATENCY_BATCH.get(shipping.cost, 1))
    colours: dict[str, str] = {}
    where: dict[str, tuple[float, float]] = {}
    for s in shipping.students:
        x = cost_of(s, shipping.cost, threads)
        if x is None:
            continue
        colour = colours.setdefault(s.label, f"C{len(colours) % 10}")
        where[s.name] = (x, 100 * s.top1)
        _student(ax, x, s, colour)
        # The student's name once; its twins, in its colour, only their kind.
        text, offset, side = (s.kind, (4, 5), "left") if s.kind in MARKERS else (s.label, (-6, -13), "right")
        ax.annotate(
            text, where[s.name], xytext=offset, textcoords="offset points", fontsize=7, color=colour, ha=side
        )
    for s in shipping.students:
        if s.kind in MARKERS and s.name in where and s.label in where:
            (x0, y0), (x1, y1) = where[s.label], where[s.name]
            ax.plot([x0, x1], [y0, y1], ":", color=colours[s.label], lw=1)
    return where


def figure(shipping: Shipping) -> Figure:
    """The figure (not saved): one error-barred point per student and twin, arrows, frontier, teacher."""
    fig = Figure(figsize=(12, 6))
    ax = fig.subplots()
    where = _points(ax, shipping)
    front = [where[name] for name in shipping.front if name in where]
    if front:
        xs, ys = zip(*front, strict=True)
        style = {"color": "black", "lw": 1.5, "alpha": 0.6, "marker": "o", "ms": 15, "mfc": "none"}
        ax.plot(xs, ys, drawstyle="steps-post", label=FRONTIER_LABEL, **style)
    _teacher_line(ax, shipping)
    xs = [x for x, _ in where.values()]
    log = bool(xs) and min(xs) > 0 and max(xs) / min(xs) >= 10
    if log:
        ax.set_xscale("log")
    ax.margins(x=0.12, y=0.08)
    ax.set_xlabel(axis_label(shipping, log))
    ax.set_ylabel("test top-1 % (mean ± std over seeds)")
    ax.set_title("Which student to ship: top-1 against cost (arrows: scratch → distilled)", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    proxies = [
        Line2D([], [], ls="", marker="o", mfc="white", color="grey", label="scratch (no teacher)"),
        Line2D([], [], ls="", marker="o", color="grey", label="distilled (PyTorch)"),
        Line2D([], [], ls="", marker="s", color="grey", label="· onnx: its fp32 ONNX file (ONNX Runtime)"),
        Line2D([], [], ls="", marker="D", color="grey", label="· int8: its int8 ONNX file (ONNX Runtime)"),
    ]
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=[*proxies, *handles], fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.tight_layout()
    return fig


def save(shipping: Shipping, path: Path) -> None:
    """Write ``figure(shipping)`` as a PNG, atomically."""
    with atomic_path(path) as tmp:
        figure(shipping).savefig(tmp, dpi=110, format="png")
