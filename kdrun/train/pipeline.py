"""``kdrun train`` as a pure task: config in, results dict out (and results.json on disk)."""

import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from kdrun import __version__
from kdrun.console import console, console_log, err_console, fail
from kdrun.data import TensorDataModule
from kdrun.errors import KdrunConfigError
from kdrun.export import EXPORT_DIR, ExportParityError, export_run, export_table
from kdrun.models import save_weights
from kdrun.models.sections import display_name
from kdrun.report import results_table, write_json_atomic
from kdrun.runtime import nodes, preemption
from kdrun.runtime.device import placed, resolve
from kdrun.strategies import Strategy
from kdrun.train.estimate import Clock, announce
from kdrun.train.evaluate import evaluate
from kdrun.train.phases import Phases
from kdrun.train.prepare import prepare
from kdrun.train.teacher_outputs import distiller
from kdrun.training.fit import fit
from kdrun.training.loggers import build_loggers, log_results

RESULTS = "results.json"
LOG = "train.log"  # what the run printed (and Hydra's log lines)
CHECKPOINTS = "checkpoints"  # the student phase's last.ckpt, for resume=


def hydra_task(cfg: DictConfig) -> float | None:
    """``kdrun train`` under Hydra: one line and an exit code for a single run; in a sweep,
    a failing point is recorded in its results.json and the sweep goes on.

    Returns the distilled student's *validation* top-1: what a sweeper (Optuna) maximises.
    """
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    started = time.perf_counter()
    if in_sweep and (earlier := _rerun_point(cfg, run_dir)) is not None:
        return earlier["student"]["val_top1"]
    try:
        with preemption.stop_on_signals():
            results = train(cfg, run_dir, echo=not in_sweep)
    except preemption.RunInterrupted as err:
        record_failure(cfg, run_dir, err, started)
        preemption.report(err, run_dir, Path(HydraConfig.get().sweep.dir) if in_sweep else None)
    except KdrunConfigError as err:
        if not in_sweep:
            fail(str(err))
        record_failure(cfg, run_dir, err, started)
        return None
    except ExportParityError as err:  # the run's results.json holds the figures and the verdict
        err_console.print(
            f"error: export: {err} (details in {run_dir / RESULTS})", markup=False, soft_wrap=True
        )
        if not in_sweep:
            sys.exit(1)
        return None
    except Exception as err:  # train() recorded it, with the traceback, in results.json (if it could)
        recorded = preemption.previous_point(run_dir, OmegaConf.to_container(cfg, resolve=True)) or {}
        written = recorded.get("status") == "failed"
        where = f"traceback in {run_dir / RESULTS}" if written else "no results.json written"
        err_console.print(
            f"error: run failed: {type(err).__name__}: {err} ({where})",
            markup=False,
            soft_wrap=True,
        )
        if not in_sweep:
            sys.exit(1)
        return None
    return results.get("student", {}).get("val_top1") if nodes.is_main() else None


def _rerun_point(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """A sweep rerun in its own ``hydra.sweep.dir``: a point that finished is skipped (its results
    are returned); one that was stopped continues from its checkpoint."""
    earlier = preemption.previous_point(run_dir, OmegaConf.to_container(cfg, resolve=True))
    if earlier is None:
        return None
    if earlier.get("status") == "ok":
        console.print(f"sweep point {run_dir.name}: finished in an earlier run of this sweep; skipped")
        return earlier
    if (run_dir / CHECKPOINTS / "last.ckpt").is_file():
        cfg.resume = str(run_dir)
    return None


def train(cfg: DictConfig, run_dir: Path, echo: bool = True) -> dict[str, Any]:
    """Teacher -> scratch student -> distilled student; evaluate and measure all three.

    Bad input raises ``KdrunConfigError`` before anything is trained or written. A failure after
    that writes ``results.json`` with ``status: "failed"`` and the error, then re-raises.
    What the run prints goes to its train.log too; with ``echo`` off (a sweep point) only there.
    """
    started = time.perf_counter()
    if cfg.resume not in (None, "auto") and Path(cfg.resume).resolve() != run_dir.resolve():
        raise KdrunConfigError("resume", cfg.resume, f"must be this run's directory, {run_dir}")
    nodes.start("nccl" if resolve(cfg.trainer).accelerator == "cuda" else "gloo")  # under torchrun / srun
    phases = prepare(cfg)  # bad input is refused here, before the run directory gets a file
    if cfg.estimate.only:  # `kdrun train --estimate`: the prediction, nothing trained or written
        return {"status": "estimate", "estimate": announce(cfg, phases).record()}
    with console_log(run_dir / LOG, echo), _torch_threads(cfg.threads):
        return _logged_train(cfg, phases, run_dir, started)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` for the run, the caller's count restored after
    (``kdrun.train(threads=1)`` in a notebook leaves the notebook's torch as it was)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _logged_train(cfg: DictConfig, phases: Phases, run_dir: Path, started: float) -> dict[str, Any]:
    console.print(resolve(cfg.trainer).line())
    predicted = announce(cfg, phases)  # None with estimate.steps=0
    loggers = build_loggers(cfg, run_dir, "student")  # the final results are added to these
    try:
        results = _train(cfg, phases, run_dir, loggers)
        if not nodes.is_main():  # evaluation and results.json are rank 0's
            return {"status": "ok", "rank": nodes.rank()}
    except (Exception, preemption.RunInterrupted) as err:
        if not isinstance(err, preemption.RunInterrupted):  # the task records an interruption
            record_failure(cfg, run_dir, err, started)
        for logger in loggers:
            logger.finalize("failed")
        raise
    results = {"status": "ok", **results, **_header(cfg, run_dir, started)}
    results["estimate"] = predicted.record() if predicted else None  # next to timings_s, measured
    write_json_atomic(run_dir / RESULTS, results)
    log_results(loggers, cfg, results)
    if not cfg.trainer.keep_checkpoint:  # only a run that has not finished needs it
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    try:
        if cfg.export.formats:  # the run is complete and recorded; the export adds its section
            choice = "all" if len(cfg.export.formats) > 1 else cfg.export.formats[0]
            written_by = f"kdrun train export={choice}"
            results = export_run(run_dir, cfg.export, data=phases.data, written_by=written_by)
    except ExportParityError as err:
        results = err.results
        raise
    finally:
        show_results(results, run_dir)
    return results


def show_results(results: dict[str, Any], run_dir: Path) -> None:
    """The results table, and the export's parity/latency table when the student was exported."""
    console.print(results_table(results))
    if "export" in results:
        console.print(export_table(results["export"]))
        console.print(f"model card: {run_dir / EXPORT_DIR / 'MODEL_CARD.md'}")
    console.print(f"results: {run_dir / RESULTS}")
    if results.get("config", {}).get("smoke"):
        console.print(
            "debug=smoke: a slice of the data for one epoch; these accuracies check that the "
            "pipeline runs, they are not results"
        )


def record_failure(cfg: DictConfig, run_dir: Path, err: BaseException, started: float) -> None:
    """Write results.json with ``status: "failed"``, the error and the traceback; or, for a signal,
    ``status: "interrupted"`` with the signal and the phase it stopped."""
    if isinstance(err, preemption.RunInterrupted):
        what = {"status": "interrupted", "signal": err.signal, "phase": err.phase, "error": str(err)}
    else:
        what = {
            "status": "failed",
            "error": f"{type(err).__name__}: {err}",
            "traceback": "".join(traceback.format_exception(err)),
        }
    failed = {**what, **_header(cfg, run_dir, started)}
    try:
        write_json_atomic(run_dir / RESULTS, failed)
    except OSError as write_err:  # a full or read-only disk: the error line says so, nothing else
        err_console.print(
            f"error: cannot write {run_dir / RESULTS}: {write_err}", markup=False, soft_wrap=True
        )


def _header(cfg: DictConfig, run_dir: Path, started: float) -> dict[str, Any]:
    elapsed = time.perf_counter() - started
    return {
        "kdrun_version": __version__,
        "started_at": datetime.fromtimestamp(time.time() - elapsed, timezone.utc).isoformat(
            timespec="seconds"
        ),
        "run_dir": str(run_dir),
        "seed": cfg.seed,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "duration_s": round(elapsed, 3),
    }


def _train(cfg: DictConfig, phases: Phases, run_dir: Path, loggers: list[Logger]) -> dict[str, Any]:
    placement = resolve(cfg.trainer)
    clock = Clock()
    baseline = phases.scratch(cfg.student, cfg.seed)
    clock.lap("baseline", "cached" if baseline.source == "cache" else "trained")

    strategy, logits = distiller(cfg, phases, placement.device)  # paired with the baseline
    student = strategy.student  # the model that ships (e.g. the student with k heads)
    teacher_source = strategy.teacher_member.source if strategy.teacher_member else "none"
    clock.lap("teacher", {"cache": "cached"}.get(teacher_source, teacher_source))
    console.print(f"student: training {cfg.student.name} with strategy {cfg.strategy.name}")
    try:
        fit(
            strategy,
            phases.student_data,
            cfg,
            epochs=strategy.student_epochs(cfg),
            seed=cfg.seed,
            log_dir=run_dir,
            label="student",
            checkpoint_dir=run_dir / CHECKPOINTS,
            resume=cfg.resume is not None,
            loggers=loggers,
        )
    finally:
        phases.student_data.views = None  # stored views are this fit's; the next sweep point shares the data
    if not nodes.is_main():
        return {}
    save_weights(student, run_dir / "student.safetensors")
    clock.lap("student", "trained")
    preemption.enter("evaluate")

    rows = evaluate(strategy, phases, baseline, strategy.student_name(display_name(cfg.student)))
    clock.lap("evaluate", "accuracy and cost of each model")
    return {
        **rows,
        "strategy": strategy.hparams(),
        "diagnostics": _diagnostics(strategy, phases.data, placement.device),
        "data": _data_record(cfg, phases),
        "device": placement.record(),
        "timings_s": clock.laps,
        # disk | computed | null (a live teacher, or none to cache) | {mode: views, R, k, bytes, seconds}
        "teacher_logits": logits,
        "paths": {
            "teacher": strategy.teacher_member.path if strategy.teacher_member else None,
            "baseline": baseline.path,
            "student": str(run_dir / "student.safetensors"),
            **{m.role: m.path for m in strategy.members if m.path},
        },
    }


def _data_record(cfg: DictConfig, phases: Phases) -> dict[str, Any]:
    """results.json's ``data``: the set, its fingerprint and shape, the size of each split."""
    data = phases.data
    return {
        "name": cfg.dataset.name,
        "fingerprint": data.fingerprint,
        "num_classes": data.num_classes,
        "input_shape": list(data.input_shape),
        **{split: len(tensors[1]) for split, tensors in data.splits.items()},
        "student_train": len(phases.student_data.splits["train"][1]),
        **data.summary(),
    }


def _diagnostics(strategy: Strategy, data: TensorDataModule, device: torch.device) -> dict[str, Any]:
    with placed(strategy, device):
        return strategy.diagnostics(data)
