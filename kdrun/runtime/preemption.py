"""Runs stopped by a signal (SLURM preemption, ``docker stop``, a CI timeout, Ctrl+C) and continued.

Inside ``stop_on_signals()`` SIGTERM and SIGINT raise ``RunInterrupted`` in the main thread.
During a fit (``at_safe_points()``) the signal is only noted, and the fit stops at the next batch
boundary (``SafePoints``, or Lightning's own SIGTERM check), never in the middle of a checkpoint
or a metrics.csv write; it leaves through Lightning's interrupt path. The task then
records ``status: "interrupted"`` with the phase in results.json, keeps the student's checkpoint,
prints how to continue, and exits 128 + the signal number (143 for SIGTERM, 130 for SIGINT).

A sweep rerun in the same ``hydra.sweep.dir`` skips the points whose results.json says ``ok`` for
the same config and continues the others from their checkpoints.
"""

import json
import shlex
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

SIGNALS = (signal.SIGTERM, signal.SIGINT)
_phase = "prepare"
_deferring = False  # inside a fit: stop at the next batch boundary
_pending: int | None = None  # a signal noted while deferring
_raised = False  # RunInterrupted was raised: later signals are ignored while it unwinds


class RunInterrupted(BaseException):
    """A signal stopped the run. A ``BaseException``, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int, phase: str) -> None:
        self.signal, self.phase = signal.Signals(signum).name, phase
        self.exit_code = 128 + signum
        super().__init__(f"{self.signal} during the {phase} phase")


def enter(phase: str) -> None:
    """Name the phase now running (``teacher``, ``baseline``, ``student``, ``evaluate``, ...)."""
    global _phase
    _phase = phase


def _interrupt(signum: int) -> None:
    global _raised, _pending
    _raised, _pending = True, None
    raise RunInterrupted(signum, _phase)


def _handler(signum: int, frame: Any) -> None:
    global _pending
    if _raised:
        return
    if _deferring and _pending is None:  # a second signal while deferring stops at once
        _pending = signum
        return
    _interrupt(signum)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM / SIGINT raise ``RunInterrupted`` once; a second signal while it unwinds is ignored."""
    global _raised, _pending
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    _raised, _pending = False, None
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    enter("prepare")
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def check() -> None:
    """Raise ``RunInterrupted`` for a signal noted while deferring."""
    if _pending is not None and not _raised:
        _interrupt(_pending)


@contextmanager
def at_safe_points() -> Iterator[None]:
    """Around a fit: a signal stops it at the next batch boundary, not mid-write."""
    global _deferring
    _deferring = True
    try:
        yield
    except SIGTERMException:  # Lightning's own stop after SIGTERM: exit code 0 unless converted
        _interrupt(signal.SIGTERM)
    finally:
        _deferring = False
    check()


class SafePoints(Callback):
    """Stops a fit between batches when a signal was noted (``at_safe_points``)."""

    def on_train_batch_end(self, *args: Any) -> None:
        check()

    def on_validation_batch_end(self, *args: Any) -> None:
        check()


def report(err: RunInterrupted, run_dir: Path, sweep_dir: Path | None) -> None:
    """Say what stopped, what was kept and the command that continues; then exit 128 + signal."""
    from kdrun.console import err_console

    kept = run_dir / "checkpoints" / "last.ckpt"
    where = f"checkpoint {kept} kept" if kept.is_file() else "no student checkpoint yet"
    lines = [f"interrupted: {err} ({where}; status in {run_dir / 'results.json'})"]
    if sweep_dir is None:
        lines.append(f"continue with: kdrun train resume={shlex.quote(str(run_dir))}")
    else:
        lines += _sweep_lines(sweep_dir)
    for line in lines:
        err_console.print(line, markup=False, soft_wrap=True)
    sys.exit(err.exit_code)


def _sweep_lines(sweep_dir: Path) -> list[str]:
    """Which points of a stopped sweep finished, and the command that runs the rest."""
    sweep_dir = sweep_dir.absolute()
    states = {p.parent.name: _status(p) for p in sorted(sweep_dir.glob("*/results.json"))}
    done = [name for name, status in states.items() if status == "ok"]
    args = [a for a in sys.argv[1:] if not a.startswith("hydra.sweep.dir=")]
    again = shlex.join(["kdrun", "train", *args, f"hydra.sweep.dir={sweep_dir}"])
    return [
        f"sweep: {len(done)} point(s) finished ({', '.join(done) or 'none'}) under {sweep_dir}; "
        "the rest did not run or did not finish",
        f"continue with: {again}  (finished points are skipped)",
    ]


def between_points(sweep_dir: Path) -> dict[int, Any]:
    """Until ``restore``: SIGTERM / SIGINT outside a point (which installs its own handler while it
    runs) end the sweep, saying which points finished; returns the handlers it replaced."""
    from kdrun.console import err_console

    def stop(signum: int, frame: Any) -> None:
        lines = [f"interrupted: {signal.Signals(signum).name} between sweep points", *_sweep_lines(sweep_dir)]
        for line in lines:
            err_console.print(line, markup=False, soft_wrap=True)
        sys.exit(128 + signum)

    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, stop) for signum in SIGNALS}


def restore(handlers: dict[int, Any]) -> None:
    """Put back the signal handlers ``between_points`` replaced."""
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def previous_point(run_dir: Path, config: dict[str, Any]) -> dict[str, Any] | None:
    """This sweep point's results.json from an earlier run of the sweep with the same config, if any."""
    try:
        earlier = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None
    same = _comparable(earlier.get("config") or {}) == _comparable(config)
    return earlier if same else None


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key != "resume"}


def _status(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError):
        return None
