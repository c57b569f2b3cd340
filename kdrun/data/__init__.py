"""Data sets by name -> a data module with a fixed train/val/test split, held in memory or streamed."""

from kdrun.data.build import build_datamodule
from kdrun.data.datamodule import TensorDataModule
from kdrun.data.imagefolder import imagefolder as _imagefolder  # noqa: F401  (registers dataset=imagefolder)
from kdrun.data.sources import DATASETS

__all__ = ["DATASETS", "TensorDataModule", "build_datamodule"]
