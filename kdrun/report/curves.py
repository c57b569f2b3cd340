"""curves.png: training loss (with its soft and hard parts) and val accuracy per epoch, the
distilled student against its scratch twin on one axis. Read from the runs' metrics.csv."""

import csv
from pathlib import Path
from typing import Any

from kdrun.files import atomic_path

MAX_LINES = 8  # more runs than this on one axis is a tangle; the first ones are drawn


def read_metrics(path: Path) -> dict[str, list[tuple[float, float]]]:
    """``{column: [(x, value), ...]}`` from a Lightning metrics.csv: step losses against the step,
    epoch metrics (``val/*``, ``train/acc``) against the epoch (1-based)."""
    series: dict[str, list[tuple[float, float]]] = {}
    if not path.is_file():
        return series
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            for key, text in row.items():
                if key in ("step", "epoch") or not text:
                    continue
                try:
                    value = float(text)
                    x = (
                        float(row["epoch"]) + 1
                        if key.startswith(("val/", "train/acc"))
                        else float(row["step"])
                    )
                except (KeyError, TypeError, ValueError):
                    continue
                series.setdefault(key, []).append((x, value))
    return series


def _baseline_metrics(results: dict[str, Any]) -> Path | None:
    folder = (results.get("paths") or {}).get("baseline")
    return Path(folder) / "metrics.csv" if folder else None


def label(results: dict[str, Any], run_dir: Path) -> str:
    """``<run>: T=… α=… seed …`` from the run's config (older results.json keep T and α under kd)."""
    cfg = results.get("config", {})
    kd = cfg.get("kd", {})
    T, alpha = cfg.get("T", kd.get("T")), cfg.get("alpha", kd.get("alpha"))
    if T is None or alpha is None:
        return run_dir.name
    return f"{run_dir.name}: T={T:g} α={alpha:g} seed {cfg.get('seed', '?')}"


Drawn = list[tuple[Path, dict[str, Any], dict[str, list[tuple[float, float]]]]]


def drawable(runs: list[tuple[Path, dict[str, Any]]]) -> Drawn:
    """The finished runs (run dir, results) that have curves, with them; at most ``MAX_LINES``."""
    drawn = [(d, r, read_metrics(d / "metrics.csv")) for d, r in runs if r.get("status") == "ok"]
    return [(d, r, m) for d, r, m in drawn if m][:MAX_LINES]


def plot(drawn: Drawn, path: Path) -> None:
    """Write the figure for what ``drawable`` returned (not empty)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4))
    single = len(drawn) == 1
    baselines_drawn: set[str] = set()
    for i, (run_dir, results, metrics) in enumerate(drawn):
        colour = f"C{i}"
        name = "distilled student" if single else label(results, run_dir)
        for key, style, part in (
            ("train/loss", "-", "loss"),
            ("train/loss_soft", "--", "soft"),
            ("train/loss_hard", ":", "hard"),
        ):
            if key in metrics and (single or key == "train/loss"):
                xs, ys = zip(*metrics[key], strict=True)
                loss_ax.plot(xs, ys, style, color=colour, label=f"{part}" if single else name)
        if "val/acc" in metrics:
            xs, ys = zip(*metrics["val/acc"], strict=True)
            acc_ax.plot(xs, [100 * y for y in ys], "-o", ms=3, color=colour, label=name)
        base = _baseline_metrics(results)
        if base is not None and str(base) not in baselines_drawn:
            baselines_drawn.add(str(base))
            scratch = read_metrics(base).get("val/acc")
            if scratch:
                xs, ys = zip(*scratch, strict=True)
                tag = (
                    "scratch student"
                    if single
                    else f"scratch, seed {results.get('config', {}).get('seed', '?')}"
                )
                shade = "grey" if single else colour
                acc_ax.plot(xs, [100 * y for y in ys], "--s", ms=3, color=shade, alpha=0.8, label=tag)
    loss_ax.set(
        xlabel="step",
        ylabel="training loss",
        title="training loss" + (" (soft and hard parts)" if single else ""),
    )
    acc_ax.set(
        xlabel="epoch",
        ylabel="val top-1 %",
        title="val accuracy per epoch (solid: distilled, dashed: scratch)",
    )
    from matplotlib.ticker import MaxNLocator

    acc_ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole
    legend: dict[str, Any] = {}  # one legend for both panels: a run's colour is the same in each
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(text, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=min(4, len(legend)), fontsize=7)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(legend) - 1) // 4), 1, 1))
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
