"""Reports: results.json (the machine-readable contract) and the terminal table."""

from kdrun.report.results import deltas, write_json_atomic
from kdrun.report.table import results_table

__all__ = ["deltas", "results_table", "write_json_atomic"]
