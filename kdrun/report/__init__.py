"""Reports: results.json (the machine-readable contract) and the terminal table.

``kdrun.report(path)`` (``from kdrun import report``) is also the Python API's report: this
package is callable, so the name means the same whether or not the package was imported first.
"""

import sys
import types
from pathlib import Path
from typing import Any

from kdrun.report.results import deltas, write_json_atomic
from kdrun.report.table import results_table

__all__ = ["deltas", "results_table", "write_json_atomic"]


class _CallableModule(types.ModuleType):
    def __call__(self, path: str | Path, metric: str = "gain") -> list[dict[str, Any]]:
        from kdrun.api import report

        return report(path, metric)


sys.modules[__name__].__class__ = _CallableModule
