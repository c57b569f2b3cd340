"""What a model costs: parameters, FLOPs, size and latency (on the CPU, and on the training GPU)."""

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import benchmark
from torch.utils.flop_counter import FlopCounterMode
from torchmetrics.classification import MulticlassAccuracy

from kdrun.config.schema import MISSING, number
from kdrun.progress import track
from kdrun.runtime.device import module_device, placed, to_device


@dataclass
class MeasureOptions:
    """The ``measure`` section: how latency is timed."""

    batch_sizes: list[int] = MISSING  # latency at each batch size (a non-empty list, each >= 1)
    threads: int = number(MISSING, ge=1, integer=True)
    min_run_time: float = number(MISSING, gt=0)  # seconds of timed runs per measurement


def architecture_id(model: nn.Module) -> str:
    """A short digest of a model's structure (its module tree and parameter shapes), not its weights."""
    shapes = [(name, tuple(t.shape)) for name, t in model.state_dict().items()]
    return hashlib.sha256(f"{model!r}{shapes}".encode()).hexdigest()[:12]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def size_mb(model: nn.Module) -> float:
    """Bytes of parameters and buffers, in MiB (what the weights file holds)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def flops_per_image(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """FLOPs of one forward pass on one image (a multiply-add counts 2), by torch's counter."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, *input_shape, device=module_device(model)))
    return int(counter.get_total_flops())


def latency_ms(
    model: nn.Module, input_shape: tuple[int, ...], batch: int, threads: int, min_run_time: float
) -> tuple[float, float | None]:
    """Median and IQR of one forward pass at ``batch``, in ms (torch.utils.benchmark, warmed up),
    on the model's device (the timer waits for a GPU's queued work)."""
    x = torch.randn(batch, *input_shape, device=module_device(model))
    with torch.no_grad():
        return latency_of(model, x, threads, min_run_time)


def latency_of(fn: Any, x: Any, threads: int, min_run_time: float) -> tuple[float, float | None]:
    """Median and IQR in ms of ``fn(x)``: a model, a TorchScript module, an ONNX Runtime call.

    ``adaptive_autorange`` keeps sampling blocks until the IQR is within 10% of the median (or
    3 x ``min_run_time`` has passed, which bounds the evaluate phase), so the IQR is a spread
    over many blocks, not one; the report shows it next to each median. With fewer than 4
    blocks (a call slower than the time allowed) there is no spread to report: the IQR is None.
    """
    fn(x)  # warm-up: first-call allocations and lazy init stay out of the measurement
    timer = benchmark.Timer(stmt="fn(x)", globals={"fn": fn, "x": x}, num_threads=threads)
    m = timer.adaptive_autorange(threshold=0.1, min_run_time=min_run_time, max_run_time=3 * min_run_time)
    return m.median * 1e3, (m.iqr * 1e3 if len(m.times) >= 4 else None)


def _one_process() -> bool:
    return False


@torch.no_grad()
def accuracy(model: nn.Module, batches: Any, num_classes: int) -> dict[str, float]:
    """Top-1 (and top-5 when there are more than 5 classes) over ``(x, y, ...)`` batches, on the
    model's device."""
    device = module_device(model)
    # One process evaluates the whole split: nothing to reduce, even inside a process group.
    alone = {"distributed_available_fn": _one_process}
    metrics = {"top1": MulticlassAccuracy(num_classes, top_k=1, average="micro", **alone).to(device)}
    if num_classes > 5:
        metrics["top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro", **alone).to(device)
    for x, y, *_ in batches:
        x, y = to_device(x, device), to_device(y, device)
        logits = model(x)
        for metric in metrics.values():
            metric.update(logits, y)
    return {name: float(metric.compute()) for name, metric in metrics.items()}


@torch.no_grad()
def paired_correct(first: nn.Module, second: nn.Module, batches: Any) -> tuple[int, int, int]:
    """``(images, only first right, only second right)`` over ``(x, y, ...)`` batches: the counts a
    paired comparison of two models on the same images needs. Both models on the same device."""
    device = module_device(first)
    images = first_only = second_only = 0
    for x, y, *_ in batches:
        x, y = to_device(x, device), to_device(y, device)
        a, b = first(x).argmax(1) == y, second(x).argmax(1) == y
        images += len(y)
        first_only += int((a & ~b).sum())
        second_only += int((b & ~a).sum())
    return images, first_only, second_only


def profile(model: nn.Module, input_shape: tuple[int, ...], cfg: Any) -> dict[str, Any]:
    """Params, FLOPs, size and latency at each of ``cfg.batch_sizes`` for an eval-mode model.

    ``latency_ms`` is always measured on the CPU with ``cfg.threads`` threads (comparable across
    machines and with exported files); a model on a GPU is moved there and back, and its latency on
    that GPU is ``device_latency_ms`` (with ``device``: ``cuda`` or ``mps``).
    """
    model.eval()
    device = module_device(model)
    row: dict[str, Any] = {
        "params": count_params(model),
        "flops": flops_per_image(model, input_shape),
        "size_mb": round(size_mb(model), 4),
    }
    if device.type != "cpu":
        row |= _latencies(model, input_shape, cfg, prefix="device_")
        row["device"] = device.type
    with placed(model, torch.device("cpu")):
        return row | _latencies(model, input_shape, cfg)


def _latencies(model: nn.Module, input_shape: tuple[int, ...], cfg: Any, prefix: str = "") -> dict[str, Any]:
    row: dict[str, Any] = {f"{prefix}latency_ms": {}, f"{prefix}latency_iqr_ms": {}}
    where = "the device" if prefix else "the CPU"
    for batch in track(cfg.batch_sizes, f"latency on {where}", unit="batch sizes"):
        median, iqr = latency_ms(model, input_shape, batch, cfg.threads, cfg.min_run_time)
        row[f"{prefix}latency_ms"][f"batch{batch}"] = round(median, 4)
        row[f"{prefix}latency_iqr_ms"][f"batch{batch}"] = None if iqr is None else round(iqr, 4)
    return row
