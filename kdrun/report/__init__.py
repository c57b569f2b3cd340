"""Reports: results.json (the machine-readable contract) and the terminal table.

``kdrun.report(path)`` (``from kdrun import report``) is also the Python API's report: this
package is callable, so the name means the same whether or not the package was imported first.
"""

import sys
import types
from pathlib import Path
from typing import Any

from kdrun.report.results import deltas, paired_gain, write_json_atomic
from kdrun.report.table import results_table

__all__ = ["deltas", "paired_gain", "results_table", "summarise", "write_json_atomic"]


def summarise(path: str | Path, metric: str = "gain") -> list[dict[str, Any]]:
    """``kdrun report <path>``: write the summary files and return one row per experiment point.

    Each row holds the point's keys (strategy, teacher, student, dataset, T, alpha, epochs),
    ``n``, ``failed``, ``seeds`` and the means and stds in percent and points (summary.csv's
    columns); ``pandas.DataFrame(rows)`` makes a table of it.
    """
    from kdrun.report.command import report
    from kdrun.report.summary import in_units

    return [in_units(row) for row in report(Path(path), metric)["rows"]]


class _CallableModule(types.ModuleType):
    def __call__(self, path: str | Path, metric: str = "gain") -> list[dict[str, Any]]:
        return summarise(path, metric)


sys.modules[__name__].__class__ = _CallableModule
