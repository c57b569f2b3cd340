"""The search loop of ``kdrun tune``: ask the study for a point, train it, tell the result.

A trial that the pruner stops is recorded ``PRUNED``; one that fails ``FAIL`` (its error in the
trial's train.log) and the search goes on; a signal records the running trial ``FAIL`` and stops
the search (``RunInterrupted``), so the next run under the same name starts a fresh trial.
"""

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from kdrun.console import console, console_log
from kdrun.errors import KdrunConfigError
from kdrun.runtime import preemption
from kdrun.train.api import compose
from kdrun.train.prepare import prepare
from kdrun.tune.space import Space
from kdrun.tune.study import HEARTBEAT_S, Clock, open_storage, open_study, suggest
from kdrun.tune.trial import PruneOnValAcc, heartbeat, validation_score

TRIALS = "trials"  # <study folder>/trials/<number>/: each trial's train.log and metrics.csv


@dataclass
class Tuning:
    """What one ``kdrun tune`` searches: the study, its space, the user's overrides."""

    name: str
    folder: Path
    storage: str
    space: Space
    overrides: list[str] = field(default_factory=list)

    def config(self, point: dict[str, Any], extra: list[str] | None = None) -> DictConfig:
        """``kdrun train`` 's config at ``point`` (``KdrunConfigError`` if it cannot compose)."""
        values = [f"{key}={_value(value)}" for key, value in point.items()]
        return compose([*self.overrides, *self.space.overrides, *values, *(extra or [])])

    def study(self, worker: int = 0) -> optuna.Study:
        return open_study(self.name, open_storage(self.storage), self.space, self.overrides, worker)


def _value(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def preflight(tuning: Tuning) -> DictConfig:
    """Every bad input before any training: overrides, space keys, each range's ends (as
    ``kdrun train`` checks them). Returns the config at the space's lower ends."""
    for override in tuning.overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key in tuning.space.params:
            raise KdrunConfigError(key, override, f"searched by {tuning.space.path}; set it there or drop it")
    base = tuning.config({})
    for key in tuning.space.params:
        if OmegaConf.select(base, key, default="__missing__") == "__missing__":
            raise KdrunConfigError(
                f"{tuning.space.path}: params.{key}",
                key,
                "not a config key of kdrun train (kdrun train --help)",
            )
    ends = [{k: _end(p, i) for k, p in tuning.space.params.items()} for i in (0, -1)]
    for end, point in zip(("low", "high"), ends, strict=True):
        try:
            prepare(tuning.config(point))
        except KdrunConfigError as err:
            where = f"params.{err.key}.{end}" if err.key in tuning.space.params else err.key
            raise KdrunConfigError(f"{tuning.space.path}: {where}", err.value, err.allowed) from None
    return tuning.config(ends[0])


def _end(param: Any, index: int) -> Any:
    if param.type == "categorical":
        return param.choices[index]
    return param.low if index == 0 else param.high


def search(tuning: Tuning, clock: Clock, worker: int = 0) -> optuna.Study:
    """Run trials while the budget allows; return the study."""
    study = tuning.study(worker)
    tag = f"[worker {worker}] " if worker else ""
    while clock.allows(study):
        with warnings.catch_warnings():  # experimental in Optuna 2
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        trial = study.ask()
        trial.set_user_attr("worker", worker)
        point = suggest(trial, tuning.space)
        outcome = run_trial(tuning, study, trial, point)
        console.print(f"{tag}{_trial_line(trial.number, point, outcome, study)}", markup=False)
    return study


def run_trial(tuning: Tuning, study: optuna.Study, trial: optuna.Trial, point: dict[str, Any]) -> str:
    """Train one trial and tell the study how it ended; the outcome in words."""
    trial_dir = tuning.folder / TRIALS / f"{trial.number:04d}"
    started = time.perf_counter()
    try:
        with console_log(trial_dir / "train.log", echo=False), heartbeat(trial, HEARTBEAT_S):
            value = validation_score(tuning.config(point), trial_dir, [PruneOnValAcc(trial)])
    except optuna.TrialPruned as pruned:
        study.tell(trial, state=TrialState.PRUNED)
        return f"{pruned}"
    except preemption.RunInterrupted:
        study.tell(trial, state=TrialState.FAIL)
        raise
    except Exception as err:  # one bad point does not end the search
        study.tell(trial, state=TrialState.FAIL)
        return f"FAILED: {type(err).__name__}: {err} (log: {trial_dir / 'train.log'})"
    study.tell(trial, value)
    return f"val top-1 {value:.4f} in {time.perf_counter() - started:.1f} s"


def _trial_line(number: int, point: dict[str, Any], outcome: str, study: optuna.Study) -> str:
    shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())
    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    best = max(complete, key=lambda t: t.value, default=None)
    tail = f" · best {best.value:.4f} (trial {best.number})" if best else ""
    return f"trial {number}: {shown} -> {outcome}{tail}"
