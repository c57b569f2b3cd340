"""What ``kdrun tune`` shows of a study: the top trials, each knob's importance, Optuna's plots
(PNG through matplotlib) and one HTML page that holds them, next to the study."""

import html
import math
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.markup import escape
from rich.table import Table

from kdrun.files import atomic_path, write_atomic

PLOTS = {  # file stem -> Optuna's matplotlib plot
    "history": "plot_optimization_history",
    "intermediate": "plot_intermediate_values",
    "slice": "plot_slice",
    "parallel": "plot_parallel_coordinate",
    "importance": "plot_param_importances",
}


def top_trials(study: optuna.Study, n: int = 10) -> list[optuna.trial.FrozenTrial]:
    """The ``n`` best finished trials; pruned ones ranked by their last reported val/acc."""
    done = [
        t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]
    return sorted(done, key=_score, reverse=True)[:n]


def _score(trial: optuna.trial.FrozenTrial) -> float:
    if trial.state == TrialState.COMPLETE:
        return trial.value
    steps = trial.intermediate_values
    return steps[max(steps)] - 1.0 if steps else -math.inf  # below every complete trial


def trials_table(study: optuna.Study, n: int = 10) -> Table:
    """A rich table of the top trials: number, state, val top-1, epochs run, the point."""
    table = Table(title=f"study {escape(study.study_name)}: top {n} trials (validation split)")
    for column in ("trial", "state", "val top-1", "epochs", "seconds"):
        table.add_column(column, justify="right")
    names = sorted({k for t in top_trials(study, n) for k in t.params})
    for name in names:
        table.add_column(escape(name), justify="right")
    for trial in top_trials(study, n):
        value = trial.value if trial.state == TrialState.COMPLETE else _last(trial)
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
        table.add_row(
            str(trial.number),
            trial.state.name.lower(),
            "-" if value is None else f"{value:.4f}",
            str(len(trial.intermediate_values)),
            f"{seconds:.0f}",
            *[_show(trial.params.get(name)) for name in names],
        )
    return table


def _last(trial: optuna.trial.FrozenTrial) -> float | None:
    steps = trial.intermediate_values
    return steps[max(steps)] if steps else None


def _show(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else escape(str(value))


def importances(study: optuna.Study) -> dict[str, float] | None:
    """Optuna's importance of each knob over the complete trials (mean decrease in impurity of a
    random forest fitted to them); None with fewer than two."""
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if len(complete) < 2:
        return None
    evaluator = optuna.importance.MeanDecreaseImpurityImportanceEvaluator(seed=0)
    try:
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (ValueError, RuntimeError):  # e.g. every complete trial at the same point
        return None


def importance_table(found: dict[str, float]) -> Table:
    table = Table(title="importance of each knob (random forest over the complete trials)", min_width=70)
    table.add_column("key")
    table.add_column("importance", justify="right")
    for key, value in found.items():
        table.add_row(escape(key), f"{value:.3f}")
    return table


def write_plots(study: optuna.Study, folder: Path) -> list[Path]:
    """Optuna's plots as PNG files in ``folder``: those the study has the trials for, and the
    installed Optuna can draw with the installed matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    written = []
    for stem, name in PLOTS.items():
        path = folder / f"{stem}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                axes = getattr(plots, name)(study)
            figure = axes.flat[0].figure if hasattr(axes, "flat") else axes.figure
            figure.set_size_inches(9, 5)
            with atomic_path(path) as tmp:
                figure.savefig(tmp, format="png", dpi=90, bbox_inches="tight")
            written.append(path)
        except Exception:  # too few trials for this plot, or Optuna 2's plot on a newer matplotlib
            continue
        finally:
            plt.close("all")
    return written


def write_html(path: Path, title: str, sections: list[tuple[str, str]], images: list[Path]) -> None:
    """One page: the given preformatted text sections, then the plots (relative links)."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    parts.append(f"<h1>{html.escape(title)}</h1>")
    for heading, text in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><pre>{html.escape(text)}</pre>")
    for image in images:
        parts.append(f"<h2>{html.escape(image.stem)}</h2><img src='{html.escape(image.name)}' width='900'>")
    write_atomic(path, "\n".join(parts) + "\n")
