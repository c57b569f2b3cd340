"""Hydra callback for multirun: a line per finished point, and a summary that sets the exit code."""

import json
import math
import sys
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from kdrun.config.roles import user_overrides
from kdrun.console import console
from kdrun.runtime import preemption


def sweep_size(config: DictConfig) -> int | None:
    """How many points a sweep has: the product of the sweep lists, or the sweeper's trial count."""
    trials = config.hydra.sweeper.get("n_trials")
    if trials is not None:
        return int(trials)
    overrides = OverridesParser.create().parse_overrides(list(config.hydra.overrides.task))
    sizes = [len(list(o.sweep_iterator())) for o in overrides if o.is_sweep_override()]
    return math.prod(sizes) if sizes else None


class SweepProgress(Callback):
    """Prints ``[point k/N] overrides: top-1 … (gain …)`` per job and a summary at the end.

    A point that fails is recorded in its results.json and the sweep goes on; at the end the
    sweep exits 1 when any point failed, so CI and schedulers see it, even when the summary
    cannot be made. SIGTERM or SIGINT between points ends the sweep with 128 + the signal,
    naming the finished points and the command that continues (a point stops on its own).
    """

    def __init__(self) -> None:
        self.total: int | None = None
        self.previous: dict[int, Any] = {}

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.total = sweep_size(config)
        self.previous = preemption.between_points(Path(config.hydra.sweep.dir))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if config.hydra.mode is None or str(config.hydra.mode) != "RunMode.MULTIRUN":
            return
        number = config.hydra.job.num + 1
        overrides = " ".join(user_overrides(config.hydra.overrides.task))
        label = f"[point {number}/{self.total or '?'}] {overrides}"
        results = _read(Path(config.hydra.runtime.output_dir) / "results.json")
        if results and results.get("status") == "ok":
            gain, se = 100 * results["deltas"]["kd_gain_top1"], results["deltas"].get("kd_gain_top1_se")
            noise = f" ± {100 * se:.2f}" if se is not None else ""
            top1 = 100 * results["student"]["top1"]
            console.print(f"{label}: top-1 {top1:.2f}% ({gain:+.2f}{noise} pts)", markup=False)
        else:
            error = (results or {}).get("error", "no results.json")
            console.print(f"{label}: FAILED: {error}", markup=False)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from kdrun.errors import KdrunConfigError
        from kdrun.report.command import report

        preemption.restore(self.previous)
        root = Path(config.hydra.sweep.dir)
        runs = [_read(p) for p in sorted(root.glob("*/results.json"))]
        try:  # the full table once, at the end (each point's own is in its train.log)
            report(root)
        except KdrunConfigError as err:
            console.print(f"no report: {err}", markup=False)
        except Exception as err:  # the exit code below must still say whether points failed
            console.print(f"no report: {type(err).__name__}: {err}", markup=False)
        failed = sum(1 for r in runs if not r or r.get("status") != "ok")
        console.print(
            f"sweep: {len(runs)} points, {failed} failed. Each point's log: <point>/train.log", markup=False
        )
        if failed:
            sys.exit(1)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
