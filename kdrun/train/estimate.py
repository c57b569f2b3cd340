"""The run's wall time, estimated before it starts from a few timed training steps per model.

Each model the run will train (the teacher unless it is loaded or cached, the scratch baseline
unless cached, the distilled student) takes ``estimate.steps`` real training steps on the run's
data, device and optimizer; an evaluation batch is timed too. Those times, times the batches of
every epoch, validation pass, BatchNorm re-estimation and logit-caching pass, give each phase's
seconds; evaluation adds the latency measurement's budget. A cached phase counts as 0.
"""

import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig

from kdrun.config.schema import MISSING, choice, number
from kdrun.console import console
from kdrun.data import TensorDataModule
from kdrun.models.sections import is_ensemble
from kdrun.progress import Phase, phase
from kdrun.runtime import nodes
from kdrun.runtime.device import placed, resolve, to_device
from kdrun.strategies import STRATEGIES, Strategy
from kdrun.strategies.scratch import Scratch
from kdrun.strategies.vanilla import Vanilla
from kdrun.train.phases import Phases, cache_logits
from kdrun.training.fit import trainer_args
from kdrun.training.module import DistillModule

WARMUP = 2  # untimed steps first: allocation and lazy initialisation are not a step's cost
FIT_OVERHEAD_S = 1.0  # a fit's start (trainer, loaders, sanity check), per trained phase


@dataclass
class EstimateOptions:
    """The ``estimate`` section: the run's predicted wall time, printed before training."""

    steps: int = number(MISSING, ge=0, integer=True)  # timed training steps per model; 0: no estimate
    min_seconds: float = number(MISSING, ge=0)  # and at least this long: one busy second is noise
    only: bool = choice(MISSING, True, False)  # print the estimate and stop (`kdrun train --estimate`)
    warn_minutes: float = number(MISSING, gt=0)  # on a CPU, a longer run says so in one line


@dataclass
class Estimate:
    """Predicted seconds per phase (``teacher``, ``students``, ``evaluate``)."""

    parts: dict[str, float] = field(default_factory=dict)
    cached: set[str] = field(default_factory=set)
    step_ms: dict[str, float] = field(default_factory=dict)  # one timed step of each model
    timed: list[int] = field(default_factory=list)  # steps timed per model

    @property
    def seconds(self) -> float:
        return sum(self.parts.values())

    def line(self) -> str:
        """``estimate: ~64 min (teacher 58, students 5, evaluate 1) — measured on 20 steps``"""
        scale, unit = (60.0, "min") if self.seconds >= 120 else (1.0, "s")
        parts = ", ".join(
            f"{name} {value / scale:.0f}" + (" (cached)" if name in self.cached else "")
            for name, value in self.parts.items()
        )
        total = f"~{self.seconds / scale:.0f} {unit}"
        low, high = min(self.timed, default=0), max(self.timed, default=0)
        steps = f"{low}" if low == high else f"{low}-{high}"
        return f"estimate: {total} ({parts}) — measured on {steps} steps per model"

    def time(self, who: str, *args: Any) -> tuple[float, float]:
        """``_timed(*args)``, kept under ``who``: seconds of a training step and of an eval batch."""
        step, forward, count = _timed(*args)
        self.step_ms[who] = round(1e3 * step, 2)
        self.timed.append(count)
        return step, forward

    def record(self) -> dict[str, Any]:
        """What results.json keeps, next to the measured ``timings_s``."""
        parts = {k: round(v, 1) for k, v in self.parts.items()}
        return {"seconds": round(self.seconds, 1), "parts_s": parts, "step_ms": self.step_ms}


def announce(cfg: DictConfig, phases: Phases) -> Estimate | None:
    """Print the run's estimate, once (rank 0), and on a CPU a line when it is long; ``None``
    with ``estimate.steps=0`` (unless ``estimate.only`` asks for it)."""
    if not (cfg.estimate.steps or cfg.estimate.only) or not nodes.is_main():
        return None
    with phase("estimate", 3, unit="models") as progress:
        predicted = estimate(cfg, phases, progress)
    console.print(predicted.line(), markup=False)
    limit = float(cfg.estimate.warn_minutes)
    if resolve(cfg.trainer).device.type == "cpu" and predicted.seconds > 60 * limit:
        console.print(
            f"estimate: over {limit:g} minutes on a CPU; a GPU (trainer.accelerator=gpu), fewer epochs "
            "(epochs=, teacher.epochs=) or a cached teacher shorten it. Continuing.",
            markup=False,
        )
    return predicted


def estimate(cfg: DictConfig, phases: Phases, progress: Phase | None = None) -> Estimate:
    """Time ``cfg.estimate.steps`` steps of each model the run trains and scale them to the run."""
    device = resolve(cfg.trainer).device
    steps = (max(1, int(cfg.estimate.steps)), float(cfg.estimate.min_seconds))
    data, student_data = phases.data, phases.student_data
    result = Estimate()
    teacher = _teacher_model(cfg, phases)
    teacher_cached = teacher is None
    if teacher_cached:
        result.parts["teacher"] = 0.0
        result.cached.add("teacher")
        teacher = phases.build(cfg.student) if is_ensemble(cfg.teacher) else phases.teacher().model
    else:
        step, forward = result.time("teacher", Scratch(teacher), data, cfg, steps, device)
        epochs = int(cfg.teacher.epochs)
        caching = _batches(data, "train") * forward if cache_logits(cfg, data) else 0.0
        result.parts["teacher"] = _fit_seconds(cfg, data, epochs, step, forward) + caching
    if progress is not None:
        progress.advance()
    students = 0.0
    if not phases.cached("baseline", cfg.student, int(cfg.seed)):
        baseline = Scratch(phases.build(cfg.student))
        step, forward = result.time("baseline", baseline, student_data, cfg, steps, device)
        students += _fit_seconds(cfg, student_data, int(cfg.student.epochs), step, forward)
    if progress is not None:
        progress.advance()
    strategy = STRATEGIES[cfg.strategy.name]
    distill: Strategy = Vanilla(phases.build(cfg.student), teacher.eval(), T=phases.T, alpha=phases.alpha)
    if strategy.caches_logits and cache_logits(cfg, student_data):  # steps read stored logits
        distill = Scratch(distill.student)
    step, forward = result.time("student", distill, student_data, cfg, steps, device)
    students += _fit_seconds(cfg, student_data, int(cfg.student.epochs), step, forward)
    result.parts["students"] = students
    if progress is not None:
        progress.advance()
    result.parts["evaluate"] = _evaluate_seconds(cfg, data, forward)
    return result


def _teacher_model(cfg: DictConfig, phases: Phases) -> torch.nn.Module | None:
    """A fresh teacher to time when the run trains one; ``None`` when it is loaded or cached."""
    if cfg.teacher.checkpoint or is_ensemble(cfg.teacher):
        return None
    if phases.cached("teacher", cfg.teacher, int(cfg.teacher.seed)):
        return None
    return phases.build(cfg.teacher)


def _batches(data: TensorDataModule, split: str) -> int:
    return -(-len(data.splits[split][1]) // data.batch_size)


def _fit_seconds(cfg: DictConfig, data: TensorDataModule, epochs: int, step: float, forward: float) -> float:
    """A fit: each epoch's steps and validation pass, then BatchNorm re-estimation and its check."""
    epoch = _batches(data, "train") * step + _batches(data, "val") * forward
    after = (_batches(data, "train") + _batches(data, "val")) * forward if cfg.recalibrate_bn else 0.0
    return FIT_OVERHEAD_S + epochs * epoch + after


def _evaluate_seconds(cfg: DictConfig, data: TensorDataModule, forward: float) -> float:
    """Three models' test and val accuracy, and the latency budget of two architectures (the
    timer samples between ``min_run_time`` and three times it; twice is typical)."""
    passes = 3 * (_batches(data, "test") + _batches(data, "val")) * forward
    latency = 2 * len(cfg.measure.batch_sizes) * 2 * float(cfg.measure.min_run_time)
    return passes + latency


def _timed(
    strategy: Strategy,
    data: TensorDataModule,
    cfg: DictConfig,
    steps: tuple[int, float],
    device: torch.device,
) -> tuple[float, float, int]:
    """Seconds of one training step (Lightning's whole step: loading, hooks, metrics, optimizer),
    of one evaluation batch, and the steps timed: at least ``steps[0]`` over at least
    ``steps[1]`` seconds, on the run's device and precision, in one process."""
    step_times = _StepTimes(*steps)
    args = trainer_args(cfg.trainer) | {"devices": 1, "num_nodes": 1, "strategy": "auto"}
    args |= {"max_epochs": -1, "max_steps": 100_000, "limit_val_batches": 0, "num_sanity_val_steps": 0}
    trainer = L.Trainer(
        **args,
        logger=False,
        callbacks=[step_times],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(DistillModule(strategy, cfg.optim, data.num_classes), datamodule=data)
    student = strategy.student.eval()
    with placed(student, device), torch.no_grad():
        x = to_device(next(iter(data.loader("val")))[0], device)
        started = time.perf_counter()
        float(student(x).sum())  # waits for a GPU's queued work
        forward = time.perf_counter() - started
    timed = step_times.gaps[WARMUP:]
    return sum(timed) / max(1, len(timed)), forward, len(timed)


class _StepTimes(Callback):
    """The time between consecutive training steps' ends (all a step costs, loading included),
    until ``steps`` steps over ``seconds`` are timed after the warm-up."""

    def __init__(self, steps: int, seconds: float) -> None:
        self.steps, self.seconds = steps, seconds
        self.gaps: list[float] = []
        self.last = 0.0

    def on_train_epoch_start(self, *args: Any) -> None:
        self.last = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        now = time.perf_counter()
        self.gaps.append(now - self.last)
        self.last = now
        timed = self.gaps[WARMUP:]
        if len(timed) >= self.steps and sum(timed) >= self.seconds:
            trainer.should_stop = True


class Clock:
    """Wall time of each phase, so a user sees what a cache hit saved; a progress line per phase."""

    PHASES = ("baseline", "teacher", "student", "evaluate")

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.started = self.last = time.perf_counter()

    def lap(self, name: str, how: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 3)
        self.last = now
        console.print(
            f"phase {self.PHASES.index(name) + 1}/{len(self.PHASES)}: {name} ({how}) "
            f"{self.laps[name]:.1f} s · elapsed {now - self.started:.1f} s",
            markup=False,
        )
