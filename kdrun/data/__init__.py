"""Data sets by name -> in-memory tensors with a fixed train/val/test split."""

from kdrun.data.build import build_datamodule
from kdrun.data.datamodule import TensorDataModule
from kdrun.data.imagefolder import imagefolder as _imagefolder  # noqa: F401  (registers dataset=imagefolder)
from kdrun.data.sources import DATASETS

__all__ = ["DATASETS", "TensorDataModule", "build_datamodule"]
