"""``kdrun tune`` from start to end: check the input, search (in one or several processes), then
report the study and confirm its best point on the test split."""

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import torch

from kdrun.console import console, err_console
from kdrun.report.results import write_json_atomic
from kdrun.runtime import preemption
from kdrun.tune import report
from kdrun.tune.confirm import confirm, confirm_table, export_recipe, recipe_path
from kdrun.tune.search import Tuning, preflight, search
from kdrun.tune.study import Budget, Clock, counts

SUMMARY = "tune.json"  # the study's outcome: counts, best trial, importances, the test re-runs
READY = "KDRUN_TUNE_READY"  # a --jobs worker marks this folder once it has opened the study


@dataclass
class Options:
    """The command line of ``kdrun tune`` beyond the overrides."""

    budget: Budget
    jobs: int = 1
    seeds: tuple[int, ...] = (0, 1, 2)
    compare: bool = True
    export_recipe: str | None = None
    worker: int = 0  # > 0: a process started by --jobs; it searches and leaves the rest to worker 0
    deadline: float | None = None


def tune(tuning: Tuning, options: Options, argv: list[str]) -> None:
    """Search, then (worker 0) the report and the test re-runs; a signal exits 128 + signal."""
    # Bad input: one line, exit 2, before anything trains (a --jobs worker's input was checked).
    base = tuning.config({}) if options.worker else preflight(tuning)
    # `threads=`, else the cores shared between the processes searching at once
    torch.set_num_threads(base.threads or max(1, (os.cpu_count() or 1) // options.jobs))
    clock = Clock(options.budget, options.deadline)
    if options.worker:
        with preemption.stop_on_signals():
            try:
                tuning.study(options.worker)  # the same space and overrides, or one line
                if READY in os.environ:  # worker 0 waits for this before its first trial
                    (Path(os.environ[READY]) / str(options.worker)).touch()
                search(tuning, clock, options.worker)
            except preemption.RunInterrupted as err:
                sys.exit(err.exit_code)
        return
    started = time.perf_counter()
    console.print(
        f"kdrun tune: study {tuning.name} ({tuning.storage}), budget {options.budget.text()}, "
        f"{options.jobs} process(es), objective: student val top-1",
        markup=False,
        soft_wrap=True,
    )
    workers = _start_workers(argv, options, clock.deadline)
    with preemption.stop_on_signals():
        try:
            study = search(tuning, clock)
            _wait(workers)
        except preemption.RunInterrupted as err:
            _stop(workers)
            _interrupted(err, tuning, argv)
    finish(tuning, study, options, time.perf_counter() - started)


def _start_workers(argv: list[str], options: Options, deadline: float | None) -> list[subprocess.Popen]:
    """``--jobs N``: N - 1 more processes on the same study (this one is worker 0), returned once
    each has opened the study (or exited), so that N processes share the budget from the start."""
    extra = ["--deadline", repr(deadline)] if deadline is not None else []
    ready = Path(tempfile.mkdtemp(prefix="kdrun-tune-"))
    env = {**os.environ, READY: str(ready)}
    workers = [
        subprocess.Popen([sys.executable, "-m", "kdrun", "tune", *argv, "--worker", str(k), *extra], env=env)
        for k in range(1, options.jobs)
    ]
    try:
        while any(w.poll() is None and not (ready / str(k)).exists() for k, w in enumerate(workers, 1)):
            time.sleep(0.2)
    finally:
        shutil.rmtree(ready, ignore_errors=True)
    return workers


def _wait(workers: list[subprocess.Popen]) -> None:
    for worker in workers:
        worker.wait()


def _stop(workers: list[subprocess.Popen]) -> None:
    """Pass the signal on: each worker records its running trial failed and exits."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    _wait(workers)


def _interrupted(err: preemption.RunInterrupted, tuning: Tuning, argv: list[str]) -> None:
    study = tuning.study()
    states = counts(study)
    err_console.print(
        f"interrupted: {err}; the running trial is recorded as failed. Study {tuning.name}: "
        f"{states['complete']} complete, {states['pruned']} pruned, {states['fail']} failed "
        f"({tuning.storage})",
        markup=False,
        soft_wrap=True,
    )
    err_console.print(f"continue with: kdrun tune {shlex.join(argv)}", markup=False, soft_wrap=True)
    sys.exit(err.exit_code)


def finish(tuning: Tuning, study: optuna.Study, options: Options, seconds: float) -> dict[str, Any]:
    """Tables, importances, plots and HTML next to the study; the best point on the test split."""
    states = counts(study)
    console.print(report.trials_table(study))
    found = report.importances(study)
    if found:
        console.print(report.importance_table(found))
    images = report.write_plots(study, tuning.folder)
    summary: dict[str, Any] = {
        "study": tuning.name,
        "storage": tuning.storage,
        "space": tuning.space.record(),
        "overrides": tuning.overrides,
        "trials": states,
        "search_seconds": round(seconds, 1),
        "importances": found,
    }
    console.print(
        f"trials: {states['complete']} complete, {states['pruned']} pruned, {states['fail']} failed "
        f"in {seconds:.0f} s",
        markup=False,
    )
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if complete:
        best = study.best_trial
        summary["best"] = {"trial": best.number, "val_top1": best.value, "params": best.params}
        console.print(f"best: trial {best.number}, val top-1 {best.value:.4f}, {best.params}", markup=False)
        if options.seeds:
            summary["confirm"] = confirm(tuning, best.params, list(options.seeds), options.compare)
            console.print(confirm_table(summary["confirm"]))
            if options.export_recipe:
                path = recipe_path(options.export_recipe)
                export_recipe(path, tuning, best.params, summary["confirm"])
                console.print(f"recipe: {path} (kdrun regress {path})", markup=False)
    write_json_atomic(tuning.folder / SUMMARY, summary)
    sections = [("summary", _text(summary))]
    report.write_html(tuning.folder / "report.html", f"kdrun tune: {tuning.name}", sections, images)
    console.print(f"study: {tuning.folder} (report.html, {SUMMARY}, {len(images)} plots)", markup=False)
    return summary


def _text(summary: dict[str, Any]) -> str:
    import json

    return json.dumps(summary, indent=2, default=str)


def study_folder(output_root: str, name: str) -> Path:
    return Path(output_root) / "tune" / name
