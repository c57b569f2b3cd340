"""Streamed loader throughput vs the training step, and the share of a step spent waiting for data.

    python benchmarks/loader.py        # or: make bench SECTIONS=loader

A folder of generated 64x64 PNGs read with ``dataset.storage=stream`` by 2 loader workers (decode,
resize, normalise per sample), measured three ways in one process: the loader alone (images/s),
the training step alone on a batch already in memory (forward, backward and SGD step of
mobilenet_v3 and resnet18 at 64 px, images/s), and both together, timing how long each step
waits in ``next(loader)``. When the loader is slower than the step, the step waits.
"""

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).parent))

from data import write_pngs  # noqa: E402
from overhead import _cfg  # noqa: E402

from kdrun.data import build_datamodule  # noqa: E402
from kdrun.models.build import model_spec  # noqa: E402
from kdrun.models.factory import create_model  # noqa: E402

IMAGES, BATCH, WORKERS, SIZE, STEPS, WARMUP = 1_600, 64, 2, 64, 12, 3  # 1,120 training images: 17 batches
MODELS = ("mobilenet_v3", "resnet18")
OVERRIDES = (
    "dataset=imagefolder",
    "dataset.storage=stream",
    f"dataset.image_size={SIZE}",
    f"dataset.num_workers={WORKERS}",
    f"dataset.batch_size={BATCH}",
    "dataset.augment=cifar",  # per-sample crop + flip in the workers
)


def loader_rate(data) -> float:
    """Images/s of the training loader alone, its workers already started (first batch not timed)."""
    batches = iter(data.loader("train", shuffle=True, augment=True))
    next(batches)
    started, images = time.perf_counter(), 0
    for _ in range(STEPS):
        images += len(next(batches)[0])
    return images / (time.perf_counter() - started)


def _step(model, optimizer, x, y) -> None:
    optimizer.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    optimizer.step()


def step_rate(model, optimizer, x, y) -> float:
    """Images/s of forward + backward + SGD step on one batch held in memory: the median step,
    after ``WARMUP`` untimed ones (the first steps of a model allocate and pick kernels)."""
    for _ in range(WARMUP):
        _step(model, optimizer, x, y)
    seconds = []
    for _ in range(STEPS):
        started = time.perf_counter()
        _step(model, optimizer, x, y)
        seconds.append(time.perf_counter() - started)
    return len(y) / statistics.median(seconds)


def waiting(data, model, optimizer) -> tuple[float, float]:
    """(share of the time spent waiting for the next batch, images/s) when the loader feeds steps."""
    batches = iter(data.loader("train", shuffle=True, augment=True))
    _step(model, optimizer, *next(batches)[:2])  # workers started (the model is warm: step_rate ran)
    waited = total = 0.0
    images = 0
    for _ in range(STEPS):
        started = time.perf_counter()
        x, y, _ = next(batches)
        ready = time.perf_counter()
        _step(model, optimizer, x, y)
        waited, total, images = (
            waited + ready - started,
            total + time.perf_counter() - started,
            images + len(y),
        )
    return waited / total, images / total


def measure() -> list[str]:
    """Markdown lines: loader and step images/s per model, and the share of time waiting."""
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        write_pngs(Path(tmp), IMAGES)
        data = build_datamodule(_cfg("cnn", "cnn", f"dataset.root={tmp}", *OVERRIDES).dataset)
        loader = loader_rate(data)
        rows = []
        for name in MODELS:
            cfg = _cfg("cnn", name, f"dataset.root={tmp}", *OVERRIDES)
            torch.manual_seed(0)
            model = create_model(model_spec(cfg.student), data.num_classes, data.input_shape).train()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x, y, _ = next(iter(data.loader("train")))
            alone = step_rate(model, optimizer, x, y)
            share, fed = waiting(data, model, optimizer)
            rows.append(f"| {name} | {loader:.0f} | {alone:.0f} | {fed:.0f} | {share:.0%} |")
    return [
        "## Streamed loader vs training step (64 px, 2 loader workers)",
        "",
        f"{IMAGES:,} generated 64x64 PNGs, `{' '.join(OVERRIDES)}`; batch {BATCH}, {STEPS} timed",
        f"batches per figure (the step alone: median step after {WARMUP} untimed), SGD,",
        f"{torch.get_num_threads()} torch threads; load average at the start:",
        f"{load:.1f} (this machine's cores are shared: the workers and the step compete for them).",
        "",
        "| student | loader alone (img/s) | step alone (img/s) | step fed by the loader (img/s) "
        "| time waiting for data |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
        "A step waits for data when the loader is slower than the step: add workers "
        "(`dataset.num_workers`) or cores, or keep a set that fits in memory there "
        "(`dataset.storage=memory`).",
    ]


if __name__ == "__main__":
    print("\n".join(measure()))
