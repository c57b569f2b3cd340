"""Where a small model's training step goes in kdrun: the step with each cost put back, side by side.

    python benchmarks/step_costs.py            # or: make bench SECTIONS=step_costs

The MLP student's cached-logit KD epoch on the default data (the case where the framework's cost
is largest relative to the model's), run in one process, settings alternating block by block:

* the hand-written loop of ``overhead.py`` (plain torch);
* Lightning's floor: a bare LightningModule with the hand loop's step and batches, a Trainer
  without logger, callbacks, progress or checkpoints, deterministic algorithms off;
* kdrun's ``fit`` as it ships, then with one cost it no longer pays put back (the NVML-based CUDA
  check Lightning sets, a DataLoader, a torchmetrics update per step, a ``self.log`` every step)
  or one setting changed (``trainer.deterministic=false``).

Figures are milliseconds of one epoch (train + validation) per training step: median epoch over
the blocks, first epoch of each block dropped.
"""

import os
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy

sys.path.insert(0, str(Path(__file__).resolve().parent))

import overhead  # noqa: E402
from overhead import STRATEGIES, _cfg, build_datamodule, create_model, kd_loss, kdrun_epochs, model_spec  # noqa: E402

import kdrun.data.datamodule as datamodule  # noqa: E402
import kdrun.training.module as module  # noqa: E402

EPOCHS, BLOCKS = 3, 3
NVML = "PYTORCH_NVML_BASED_CUDA_CHECK"


class _HandBatches:
    """The hand loop's batches: a permutation per epoch, split; a length for Lightning."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch: int, shuffle: bool) -> None:
        self.x, self.y, self.batch, self.shuffle = x, y, batch, shuffle
        self.generator = torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        n = len(self.y)
        order = torch.randperm(n, generator=self.generator) if self.shuffle else torch.arange(n)
        for idx in order.split(self.batch):
            yield self.x[idx], self.y[idx], idx


class _Bare(L.LightningModule):
    """The hand loop's KD step as a LightningModule, nothing else."""

    def __init__(self, student: torch.nn.Module, cached: torch.Tensor, steps: int) -> None:
        super().__init__()
        self.student, self.cached, self.steps = student, cached, steps
        self.started, self.seconds = 0.0, []

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, idx = batch
        logits = self.student(x)
        return 0.9 * kd_loss(logits, self.cached[idx], 4.0) + 0.1 * F.cross_entropy(logits, y)

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self.student(batch[0]).argmax(1)

    def on_train_epoch_start(self) -> None:
        self.started = overhead.clock()

    def on_train_epoch_end(self) -> None:
        self.seconds.append(overhead.clock() - self.started)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.Adam(self.student.parameters(), lr=1e-3)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def _bare(student: torch.nn.Module, cached: torch.Tensor, data) -> list[float]:
    (x, y), (vx, vy) = ((data.splits[s][0][:], data.splits[s][1]) for s in ("train", "val"))
    train = _HandBatches(x, y, data.batch_size, shuffle=True)
    bare = _Bare(student, cached, EPOCHS * len(train))
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        deterministic=False,
    )
    with overhead.plain_torch():
        trainer.fit(bare, train, _HandBatches(vx, vy, data.batch_size, shuffle=False))
    return bare.seconds


def _variants(data, cached: torch.Tensor) -> dict[str, Callable[[], list[float]]]:
    """Each setting: a function that trains a fresh student for ``EPOCHS`` and returns epoch seconds."""

    def student() -> torch.nn.Module:
        torch.manual_seed(0)
        return create_model(model_spec(_cfg("cnn", "mlp").student), data.num_classes, data.input_shape)

    def kdrun(*overrides: str, step_metric: bool = False) -> list[float]:
        strategy = STRATEGIES["vanilla"](student(), None, T=4.0, alpha=0.9)
        strategy.teacher_logits = cached
        if step_metric:  # what train/acc cost when torchmetrics was updated on every step
            metric, loss_terms = MulticlassAccuracy(data.num_classes, average="micro"), strategy.loss_terms

            def measured(x: torch.Tensor, y: torch.Tensor, index: torch.Tensor):
                logits, terms = loss_terms(x, y, index)
                metric.update(logits.detach(), y)
                return logits, terms

            strategy.loss_terms = measured
        return kdrun_epochs(strategy, data, _cfg("cnn", "mlp", *overrides), EPOCHS)

    def patched(target: object, name: str, value: object, run: Callable[[], list[float]]) -> list[float]:
        before = getattr(target, name)
        setattr(target, name, value)
        try:
            return run()
        finally:
            setattr(target, name, before)

    def nvml_check() -> list[float]:
        os.environ[NVML] = "1"  # as importing Lightning sets it
        try:
            return patched(module, "skip_unloadable_nvml_check", lambda: None, kdrun)
        finally:
            module.skip_unloadable_nvml_check()

    def dataloader(dataset, batches, pin: bool) -> DataLoader:
        return DataLoader(dataset, sampler=batches, batch_size=None, pin_memory=pin)

    return {
        "hand-written loop (plain torch)": lambda: overhead.hand_epochs(
            student(), None, data, EPOCHS, 4.0, 0.9, cached
        ),
        "Lightning floor (bare module and Trainer)": lambda: _bare(student(), cached, data),
        "kdrun fit": kdrun,
        "kdrun + NVML-based CUDA check on every optimizer step": nvml_check,
        "kdrun + DataLoader (no workers) instead of TensorBatches": lambda: patched(
            datamodule, "TensorBatches", dataloader, kdrun
        ),
        "kdrun + torchmetrics update on every step": lambda: kdrun(step_metric=True),
        "kdrun + step losses logged every step": lambda: kdrun("trainer.log_every_n_steps=1"),
        "kdrun with trainer.deterministic=false": lambda: kdrun("trainer.deterministic=false"),
    }


def measure() -> list[str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(overhead.THREADS)
    try:
        return _measure()
    finally:
        torch.set_num_threads(threads)


def _measure() -> list[str]:
    data = build_datamodule(_cfg("cnn", "mlp").dataset)
    cfg = _cfg("cnn", "mlp")
    torch.manual_seed(0)
    teacher = create_model(model_spec(cfg.teacher), data.num_classes, data.input_shape).eval()
    with torch.no_grad():
        cached = torch.cat([teacher(a) for a in data.splits["train"][0][:].split(512)])
    steps = -(-len(data.splits["train"][1]) // data.batch_size)
    variants = _variants(data, cached)
    load = overhead._load()
    blocks: dict[str, list[list[float]]] = {name: [] for name in variants}
    for _ in range(BLOCKS):
        for name, run in variants.items():
            blocks[name].append(run())
    ms = {name: 1000 * statistics.median(t for b in bs for t in b[1:]) / steps for name, bs in blocks.items()}
    base = ms["kdrun fit"]
    lines = [
        "## Where a small model's step goes (`benchmarks/step_costs.py`)",
        "",
        f"mlp student, cached teacher logits, default data ({steps} steps of {data.batch_size} a epoch), "
        f"{overhead.THREADS} thread(s); {'CPU' if overhead.THREADS == 1 else 'wall'} ms of one epoch "
        "(train + validation) per training step, median "
        f"over {BLOCKS} alternating blocks of {EPOCHS} epochs (first of each block dropped). "
        f"Load at the start: {load}; at the end: {overhead._load()}.",
        "",
        "| setting | ms / step | vs kdrun fit (ms / step) |",
        "|---|---:|---:|",
        *(f"| {name} | {value:.3f} | {value - base:+.3f} |" for name, value in ms.items()),
        "",
    ]
    return lines


if __name__ == "__main__":
    if "--threads" in sys.argv:
        overhead.THREADS = int(sys.argv[sys.argv.index("--threads") + 1])
    print("\n".join(measure()))
