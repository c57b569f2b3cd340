"""Shipping the distilled student: ONNX / TorchScript files, a parity check, runtime latency, a model card."""

from kdrun.export.command import EXPORT_DIR, ExportParityError, export_run, export_table
from kdrun.export.formats import FORMATS
from kdrun.export.settings import check_settings

__all__ = ["EXPORT_DIR", "FORMATS", "ExportParityError", "check_settings", "export_run", "export_table"]
