"""kdrun from Python (a notebook, a script): ``train`` a run, ``report`` on runs.

    from kdrun import train, report
    results = train(["teacher=cnn", "T=4", "debug=smoke"])   # results.json's content
    rows = report("outputs/runs")                             # one dict per experiment point

Nothing here exits the interpreter: bad input raises ``KdrunConfigError`` (the key, the value,
what is allowed) before anything is trained; a run that fails raises ``KdrunRunError`` after
recording the failure in its results.json.
"""

from pathlib import Path
from typing import Any

from kdrun.errors import KdrunConfigError
from kdrun.train.api import KdrunRunError, compose, train

__all__ = ["KdrunConfigError", "KdrunRunError", "compose", "report", "train"]


def report(path: str | Path, metric: str = "gain") -> list[dict[str, Any]]:
    """``kdrun report <path>``: write the summary files and return one row per experiment point
    (summary.csv's columns: means and stds in percent and points, n, seeds)."""
    from kdrun.report import summarise

    return summarise(path, metric)
