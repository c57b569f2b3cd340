"""The Optuna study of ``kdrun tune``: SQLite under the output folder, its sampler and pruner, the
budget, and what a trial samples.

A study is named; ``kdrun tune`` run again under the same name loads it and goes on. Several
processes (``--jobs``, or other machines given the same ``--storage``) share it through the
database; a trial whose process died is failed by Optuna's heartbeat check.
"""

import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock
from optuna.trial import TrialState

from kdrun.errors import KdrunConfigError
from kdrun.tune.space import Space

optuna.logging.set_verbosity(optuna.logging.WARNING)  # kdrun prints a line per trial itself
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

DATABASE = "study.db"
HEARTBEAT_S = 30  # a running trial says it is alive this often (each epoch at most)
GRACE_S = 300  # a trial silent this long belongs to a process that died: it is failed
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass
class Budget:
    """``--budget``: a number of finished trials in the study, or a wall time for this run."""

    trials: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> "Budget":
        """``20`` (trials), ``30m``, ``2h``, ``90s``."""
        found = re.fullmatch(r"\s*(\d+)\s*([smh]?)\s*", str(text))
        if not found or int(found[1]) < 1:
            raise KdrunConfigError("--budget", text, "a number of trials (20) or a time (90s, 30m, 2h), >= 1")
        value, unit = int(found[1]), found[2]
        if not unit:
            return cls(trials=value)
        return cls(seconds=value * {"s": 1, "m": 60, "h": 3600}[unit])

    def text(self) -> str:
        return f"{self.trials} trials" if self.trials else f"{self.seconds:g} s"


def storage_url(folder: Path) -> str:
    """The SQLite database of the study in ``folder``."""
    return f"sqlite:///{(folder / DATABASE).absolute()}"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage with heartbeats; a new SQLite file is set up under a file lock."""
    kwargs = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S}
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{path}.lock"):
            if not path.exists() and optuna.__version__.startswith("2."):
                # Optuna 2 stamps its schema version on a connection it never commits under
                # SQLAlchemy 2: create the schema with each statement committed, then reopen.
                optuna.storages.RDBStorage(url, engine_kwargs={"isolation_level": "AUTOCOMMIT"})
            return optuna.storages.RDBStorage(url, **kwargs)
    return optuna.storages.RDBStorage(url, **kwargs)


def open_study(name: str, storage: Any, space: Space, overrides: list[str], worker: int = 0) -> optuna.Study:
    """Create the study ``name``, or load it when it exists and searches the same space with the
    same overrides (else one line naming what differs)."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction="maximize",
        sampler=_sampler(space, worker),
        pruner=_pruner(space),
        load_if_exists=True,
    )
    recorded = study.user_attrs
    mine = {"space": space.record(), "overrides": list(overrides)}
    if not recorded:
        for key, value in mine.items():
            study.set_user_attr(key, value)
        return study
    for key, value in mine.items():
        if recorded.get(key) != value:
            raise KdrunConfigError(
                "--name",
                name,
                f"this study was started with other {key} ({recorded.get(key)}); "
                "give a new --name, or the same "
                + ("space file" if key == "space" else "overrides")
                + " to continue it",
            )
    return study


def _sampler(space: Space, worker: int) -> optuna.samplers.BaseSampler:
    seed = space.sampler.seed + worker  # parallel workers must not draw the same random points
    if space.sampler.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=space.sampler.startup_trials)


def _pruner(space: Space) -> optuna.pruners.BasePruner:
    options = space.pruner
    if options.name == "median":
        return optuna.pruners.MedianPruner(
            n_startup_trials=options.startup_trials, n_warmup_steps=options.warmup_epochs
        )
    if options.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=options.min_epochs, reduction_factor=options.reduction_factor
        )
    return optuna.pruners.NopPruner()


def suggest(trial: optuna.Trial, space: Space) -> dict[str, Any]:
    """The trial's point: config key -> value, drawn by the study's sampler."""
    point: dict[str, Any] = {}
    for key, param in space.params.items():
        if param.type == "categorical":
            point[key] = trial.suggest_categorical(key, param.choices)
        elif param.type == "int":
            point[key] = trial.suggest_int(key, param.low, param.high, log=param.log)
        else:
            point[key] = trial.suggest_float(key, float(param.low), float(param.high), log=param.log)
    return point


def counts(study: optuna.Study) -> dict[str, int]:
    """Trials of each state: complete, pruned, fail, running."""
    states = [t.state for t in study.get_trials(deepcopy=False)]
    return {state.name.lower(): states.count(state) for state in TrialState}


class Clock:
    """Whether the budget allows another trial: in trials (running ones count) or in time."""

    def __init__(self, budget: Budget, deadline: float | None = None) -> None:
        self.budget = budget
        self.deadline = deadline
        if deadline is None and budget.seconds is not None:
            self.deadline = time.time() + budget.seconds

    def allows(self, study: optuna.Study) -> bool:
        if self.deadline is not None:
            return time.time() < self.deadline
        states = counts(study)
        return states["complete"] + states["pruned"] + states["running"] < (self.budget.trials or 0)
