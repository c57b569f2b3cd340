"""Progress of kdrun's long phases: a live rich bar on a terminal, one plain line per phase elsewhere.

``phase(label, total)`` shows a bar (spinner, count, elapsed) while the block runs, on kdrun's
console when it is a terminal; phases opened inside it (an epoch inside a recipe) are rows of the
same display. When a phase took ``LINE_AFTER_S`` or more it leaves one line, ``label: 469/469
batches in 12.3 s``, on a terminal and in a pipe or CI log alike (no carriage returns there).

``advance`` only counts; rich hears of the count at most every ``REFRESH_S``, so a training step
pays a clock read for its bar and nothing else.
"""

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from kdrun.console import console

LINE_AFTER_S = 2.0  # a shorter phase leaves no line (a bar on a terminal only while it runs)
REFRESH_S = 0.25  # how often a bar's count reaches rich

Item = TypeVar("Item")


class Phase:
    """A running phase: ``advance`` counts its steps; ``describe`` says what runs in it now (in the
    live display; the phase's line keeps its label)."""

    def __init__(self, label: str, total: int | None, unit: str) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.now = label
        self.done = 0
        self.started = self._pushed = time.perf_counter()
        self.task: TaskID | None = None

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        if self.task is not None and (now := time.perf_counter()) - self._pushed >= REFRESH_S:
            self._pushed = now
            _display.show(self)

    def describe(self, now: str, total: int | None = None) -> None:
        self.now, self.total = now, total or self.total
        if self.task is not None:
            _display.show(self)

    def line(self) -> str:
        count = self.done if self.total is None else f"{self.done}/{self.total}"
        return f"{self.label}: {count} {self.unit} in {time.perf_counter() - self.started:.1f} s"


class _Display:
    """The one live rich display: started by the first open phase, stopped with the last."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.open = 0

    def add(self, phase: Phase) -> None:
        if self.progress is None:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
                refresh_per_second=4,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.progress.start()
        self.open += 1
        phase.task = self.progress.add_task(phase.label, total=phase.total, unit=phase.unit)

    def show(self, phase: Phase) -> None:
        if self.progress is not None and phase.task is not None:
            self.progress.update(
                phase.task, completed=phase.done, total=phase.total, description=phase.now, refresh=True
            )

    def remove(self, phase: Phase) -> None:
        if self.progress is None or phase.task is None:
            return
        self.progress.remove_task(phase.task)
        phase.task = None
        self.open -= 1
        if self.open == 0:
            self.progress.stop()
            self.progress = None


_display = _Display()


@contextmanager
def phase(label: str, total: int | None = None, unit: str = "batches", line: bool = True) -> Iterator[Phase]:
    """Show ``label``'s progress while the block runs; with ``line``, one line when it took a while."""
    current = Phase(label, total, unit)
    if console.is_terminal:
        _display.add(current)
    try:
        yield current
    finally:
        _display.remove(current)
    if line and time.perf_counter() - current.started >= LINE_AFTER_S:
        console.print(current.line(), markup=False, soft_wrap=True)


def track(
    items: Iterable[Item], label: str, total: int | None = None, unit: str = "batches"
) -> Iterator[Item]:
    """``items`` with a ``phase``: a loader's batches counted as they are used."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with phase(label, total, unit) as current:
        for item in items:
            yield item
            current.advance()
