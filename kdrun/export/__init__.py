"""Shipping the distilled student: ONNX / TorchScript files, a parity check, runtime latency, a model card."""

from kdrun.export.command import EXPORT_DIR, ExportParityError, export_run
from kdrun.export.formats import FORMATS
from kdrun.export.settings import check_settings
from kdrun.export.table import export_table

__all__ = ["EXPORT_DIR", "FORMATS", "ExportParityError", "check_settings", "export_run", "export_table"]
