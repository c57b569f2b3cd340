"""The device a run trains on, and the precision and determinism it trains with.

``trainer.accelerator``, ``trainer.precision``, ``trainer.deterministic`` and ``trainer.benchmark``
default to ``auto``, resolved here for the machine at hand (``resolve``):

* accelerator: the GPU when PyTorch sees one (CUDA, else Apple MPS), else the CPU;
* precision: ``bf16-mixed`` on a CUDA GPU that computes in bfloat16 natively (Ampere and later),
  ``32-true`` everywhere else;
* deterministic: ``true`` on the CPU (a config and seed give the same numbers, bit for bit);
  ``"warn"`` on a GPU, where some backward kernels have no deterministic CUDA implementation
  (bilinear interpolation, which hints and attention transfer use to match feature sizes;
  adaptive average pooling to more than 1x1, as in vgg and alexnet): ``true`` would stop the
  first step with a RuntimeError, ``"warn"`` uses deterministic kernels wherever PyTorch has them
  (``tests/test_device_paths.py`` matches each strategy's ops against PyTorch's list);
* benchmark (cudnn's convolution autotuner): on only on CUDA with ``deterministic: false``.

The resolved values are what the trainer gets, what the cache keys hash (so a CPU run's keys are
those of the explicit CPU settings) and what results.json and the model card record.
"""

import ctypes
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kdrun.errors import KdrunConfigError

AUTO = "auto"
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"  # set to 1 by Lightning when it is imported
NVML_LIBRARY = "libnvidia-ml.so.1"  # what torch.cuda loads for that check


def skip_unloadable_nvml_check() -> None:
    """Drop Lightning's NVML-based CUDA check on a machine where NVML does not load (no NVIDIA driver).

    Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` so that asking whether CUDA is available
    does not initialise CUDA before a fork. Every torch optimizer step asks; with the variable
    set and no driver, each answer loads the NVML library again, fails, and falls back to the
    CUDA runtime's count: ~50 us a step, more than a small model's optimizer step. Where NVML
    cannot load, the answer comes from that fallback either way: removing the variable changes
    no answer, only the cost. With a driver the variable stays.
    """
    if os.environ.get(NVML_CHECK) != "1" or not hasattr(torch._C, "_cuda_getDeviceCount"):
        return
    try:
        ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        del os.environ[NVML_CHECK]


@contextmanager
def unfilled_new_tensors() -> Iterator[None]:
    """New tensors left unfilled for the block, also under deterministic algorithms.

    ``torch.use_deterministic_algorithms(True)`` also fills every new tensor with NaN, which
    PyTorch documents as safe to turn off for a program that reads no uninitialised memory: it
    stays deterministic (same seed, same bits) and a small model's step is ~6% cheaper.
    """
    filled = torch.utils.deterministic.fill_uninitialized_memory
    torch.utils.deterministic.fill_uninitialized_memory = False
    try:
        yield
    finally:
        torch.utils.deterministic.fill_uninitialized_memory = filled


def gpu_kind() -> str | None:
    """``"cuda"`` or ``"mps"`` when PyTorch can use that GPU here, else ``None``."""
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return None


def bf16_native() -> bool:
    """Whether the CUDA GPU computes in bfloat16 in hardware (emulated support does not count)."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


@dataclass(frozen=True)
class Placement:
    """The resolved trainer settings: where a run trains and how."""

    accelerator: str  # cpu | cuda | mps
    precision: str | int
    deterministic: bool | str  # True | False | "warn"
    benchmark: bool
    devices: int = 1

    @property
    def device(self) -> torch.device:
        """Where the kdrun process evaluates and computes teacher outputs (the first GPU)."""
        return torch.device(self.accelerator)

    @property
    def on_gpu(self) -> bool:
        return self.accelerator != "cpu"

    def trainer_args(self) -> dict[str, Any]:
        """The Lightning Trainer arguments these settings stand for."""
        return {
            "accelerator": self.accelerator,
            "precision": self.precision,
            "deterministic": self.deterministic,
            "benchmark": self.benchmark,
        }

    def device_name(self) -> str:
        if self.accelerator == "cuda":
            return torch.cuda.get_device_name(0)
        if self.accelerator == "mps":
            return "Apple GPU (MPS)"
        threads = torch.get_num_threads()
        return f"CPU, {threads} thread{'s' if threads != 1 else ''}"

    def record(self) -> dict[str, Any]:
        """The ``device`` section of results.json."""
        return {
            "accelerator": self.accelerator,
            "name": self.device_name(),
            "devices": self.devices,
            "precision": self.precision,
            "deterministic": self.deterministic,
            "benchmark": self.benchmark,
            "torch": torch.__version__,
            "cuda": torch.version.cuda if self.accelerator == "cuda" else None,
        }

    def line(self) -> str:
        """One line for the start of a run."""
        devices = f" x{self.devices}" if self.devices > 1 else ""
        deterministic = str(self.deterministic).lower()
        return (
            f"device: {self.accelerator}{devices} ({self.device_name()}) · precision {self.precision} · "
            f"deterministic {deterministic}" + (" · cudnn.benchmark on" if self.benchmark else "")
        )


def resolve(trainer: Mapping[str, Any]) -> Placement:
    """The ``trainer`` group's device, precision and determinism for this machine (``auto`` resolved).

    Raises ``KdrunConfigError`` when it asks for a GPU that PyTorch cannot use here.
    """
    accelerator = _accelerator(trainer.get("accelerator", AUTO))
    precision = trainer.get("precision", AUTO)
    if precision == AUTO:
        precision = "bf16-mixed" if accelerator == "cuda" and bf16_native() else "32-true"
    deterministic = trainer.get("deterministic", AUTO)
    if deterministic == AUTO:
        deterministic = True if accelerator == "cpu" else "warn"
    benchmark = trainer.get("benchmark", AUTO)
    if benchmark == AUTO:
        benchmark = accelerator == "cuda" and deterministic is False
    return Placement(accelerator, precision, deterministic, bool(benchmark), int(trainer.get("devices", 1)))


def _accelerator(value: Any) -> str:
    found = gpu_kind()
    if value == AUTO:
        return found or "cpu"
    if value == "cpu":
        return "cpu"
    if value not in ACCELERATORS:
        raise KdrunConfigError("trainer.accelerator", value, f"allowed: {', '.join(ACCELERATORS)}")
    wanted = found if value == "gpu" else value
    if wanted is None or wanted != found:
        here = f"auto, cpu, {found}" if found else "auto, cpu (PyTorch sees no GPU on this machine)"
        raise KdrunConfigError("trainer.accelerator", value, f"allowed here: {here}")
    return wanted


def module_device(model: nn.Module) -> torch.device:
    """The device of a model's first parameter (or buffer); CPU for a model without tensors."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``x`` on ``device``; an upload from the CPU does not wait for the copy (a pinned batch
    overlaps it with compute), a download to the CPU does."""
    return x.to(device, non_blocking=device.type == "cuda")


@contextmanager
def placed(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """``model`` moved to ``device`` for the block, and back where it was after it."""
    home = module_device(model)
    if home == device:
        yield model
        return
    model.to(device)
    try:
        yield model
    finally:
        model.to(home)
