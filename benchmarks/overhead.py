"""kdrun's KD epoch against a minimal hand-written PyTorch KD loop; cached KD against scratch.

    python benchmarks/overhead.py            # prints the Markdown section; run.py writes it to the doc

Both sides train the same model objects (built by kdrun's factory, so the same memory layout),
on the same in-memory tensors, batch size, Adam + per-step cosine schedule, T and alpha, and
both validate once per epoch. The hand loop is what an engineer writes in 30 lines: a random
permutation per epoch, index the tensors, forward, loss, backward, step. Blocks of epochs
alternate kdrun / hand (ABAB...) so drift on a shared machine hits both; the figure is the
median epoch (first epoch of each block dropped: warm-up), and the ratio is kdrun / hand.

The hand loop runs in torch's default state, as a script of its own would: without the
deterministic-algorithm flag a kdrun fit leaves set, and without the NVML-based CUDA check that
importing Lightning switches on (``plain_torch``). One torch thread by default (``--threads N``):
the framework's cost is single-threaded Python, and on a shared 2-core machine a second thread
mostly measures the neighbours. With one thread the clock is the process's CPU time, which a
loaded machine's waiting does not inflate; with several, wall time.

    python benchmarks/overhead.py [--threads N] [teacher:student ...]
"""

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kdrun.training.fit as kdrun_fit  # noqa: E402
from kdrun.data import TensorDataModule, build_datamodule  # noqa: E402
from kdrun.losses import kd_loss  # noqa: E402
from kdrun.models.build import model_spec  # noqa: E402
from kdrun.models.factory import create_model  # noqa: E402
from kdrun.strategies import STRATEGIES  # noqa: E402
from kdrun.training.callbacks import EpochLines  # noqa: E402
from kdrun.training.fit import fit  # noqa: E402

PAIRS = (("resnet18", "mobilenet_v3"), ("mlp", "mlp"))
EPOCHS, BLOCKS = 3, 3  # epochs per block; blocks per side (alternating)
THREADS = 1
VAL_ACC: dict[str, float] = {}  # last validation accuracy of each side: both must learn


def _cfg(teacher: str, student: str, *overrides: str):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        return compose(
            "train",
            overrides=[f"model@teacher={teacher}", f"model@student={student}", "logger=csv", *overrides],
        )


def clock() -> float:
    """CPU seconds of this process with one thread (what the work costs, whatever the neighbours
    do on a shared machine); wall seconds with several (their waits on each other count)."""
    return time.process_time() if THREADS == 1 else time.perf_counter()


class _Timed(EpochLines):
    """kdrun's own per-epoch line callback, recording each epoch's seconds (train + validation)."""

    seconds: list[float] = []

    def on_train_epoch_start(self, trainer, module) -> None:
        super().on_train_epoch_start(trainer, module)
        self.clock_started = clock()

    def on_train_epoch_end(self, trainer, module) -> None:
        _Timed.seconds.append(clock() - self.clock_started)


def kdrun_epochs(strategy: nn.Module, data: TensorDataModule, cfg, epochs: int) -> list[float]:
    """Seconds of each epoch of kdrun's ``fit``; the last epoch's val accuracy goes to ``VAL_ACC``."""
    _Timed.seconds = []
    kdrun_fit.EpochLines = _Timed  # fit() builds its callbacks; this one also times them
    try:
        with tempfile.TemporaryDirectory() as log_dir:
            metrics = fit(strategy, data, cfg, epochs=epochs, seed=0, log_dir=Path(log_dir), label="bench")
    finally:
        kdrun_fit.EpochLines = EpochLines
    VAL_ACC["kdrun"] = metrics["val/acc"]
    return list(_Timed.seconds)


@contextmanager
def plain_torch() -> Iterator[None]:
    """torch as a fresh script has it: no deterministic algorithms, torch's own CUDA check."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    nvml = os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(deterministic)
        if nvml is not None:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = nvml


def hand_epochs(
    student: nn.Module,
    teacher: nn.Module | None,
    data: TensorDataModule,
    epochs: int,
    T: float,
    alpha: float,
    cached: torch.Tensor | None = None,
) -> list[float]:
    """The minimal KD loop (``teacher=None`` and no ``cached``: plain cross-entropy)."""
    with plain_torch():
        return _hand_epochs(student, teacher, data, epochs, T, alpha, cached)


def _hand_epochs(
    student: nn.Module,
    teacher: nn.Module | None,
    data: TensorDataModule,
    epochs: int,
    T: float,
    alpha: float,
    cached: torch.Tensor | None,
) -> list[float]:
    (x, y), (vx, vy) = ((data.splits[s][0][:], data.splits[s][1]) for s in ("train", "val"))  # as float32
    batch = data.batch_size
    steps = epochs * -(-len(y) // batch)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    generator = torch.Generator().manual_seed(0)
    seconds = []
    for _ in range(epochs):
        start = clock()
        student.train()
        for idx in torch.randperm(len(y), generator=generator).split(batch):
            xb, yb = x[idx], y[idx]
            logits = student(xb)
            loss = F.cross_entropy(logits, yb)
            if cached is not None or teacher is not None:
                with torch.no_grad():
                    t_logits = cached[idx] if cached is not None else teacher(xb)
                loss = alpha * kd_loss(logits, t_logits, T) + (1 - alpha) * loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        student.eval()
        with torch.no_grad():
            pairs = zip(vx.split(512), vy.split(512), strict=True)
            correct = sum(int((student(a).argmax(1) == b).sum()) for a, b in pairs)
        seconds.append(clock() - start)
    VAL_ACC["hand"] = correct / len(vy)
    return seconds


def _median(blocks: list[list[float]]) -> float:
    return statistics.median(t for block in blocks for t in block[1:])


def compare(pair: tuple[str, str], data: TensorDataModule) -> tuple[dict[str, float], dict[str, float]]:
    """Median epoch seconds (and last val accuracy): kdrun vs hand, live teacher, cached logits, scratch."""
    cfg = _cfg(*pair)
    T, alpha = float(cfg.T), float(cfg.alpha)
    shape, classes = data.input_shape, data.num_classes

    def model(section) -> nn.Module:
        torch.manual_seed(0)
        return create_model(model_spec(section), classes, shape)

    teacher = model(cfg.teacher).eval().requires_grad_(False)
    with torch.no_grad():
        cached = torch.cat([teacher(a) for a in data.splits["train"][0][:].split(512)])
    runs: dict[str, Callable[[], list[float]]] = {}

    def kdrun_kd(cache: bool) -> list[float]:
        strategy = STRATEGIES["vanilla"](model(cfg.student), teacher, T=T, alpha=alpha)
        if cache:
            strategy.cache_teacher_logits(data.loader("train"))
        return kdrun_epochs(strategy, data, cfg, EPOCHS)

    runs["kdrun live"] = lambda: kdrun_kd(False)
    runs["hand live"] = lambda: hand_epochs(model(cfg.student), teacher, data, EPOCHS, T, alpha)
    runs["kdrun cached"] = lambda: kdrun_kd(True)
    runs["hand cached"] = lambda: hand_epochs(model(cfg.student), None, data, EPOCHS, T, alpha, cached)
    runs["kdrun scratch"] = lambda: kdrun_epochs(STRATEGIES["scratch"](model(cfg.student)), data, cfg, EPOCHS)
    runs["hand scratch"] = lambda: hand_epochs(model(cfg.student), None, data, EPOCHS, T, alpha)
    blocks: dict[str, list[list[float]]] = {name: [] for name in runs}
    accuracy: dict[str, float] = {}
    for _ in range(BLOCKS):
        for name, run in runs.items():
            blocks[name].append(run())
            accuracy[name] = VAL_ACC[name.split()[0]]
    return {name: _median(b) for name, b in blocks.items()}, accuracy


def measure() -> list[str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _measure()
    finally:
        torch.set_num_threads(threads)


def _load() -> str:
    return "load average " + " / ".join(f"{x:.1f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"


def _measure() -> list[str]:
    data = build_datamodule(_cfg("cnn", "mlp").dataset)
    lines = [
        "## Overhead: kdrun's KD epoch vs a hand-written PyTorch loop (`benchmarks/overhead.py`)",
        "",
        f"Default data ({len(data.splits['train'][1])} train / {len(data.splits['val'][1])} val images, "
        f"{'x'.join(map(str, data.input_shape))}), batch {data.batch_size}, Adam + cosine, {THREADS} "
        f"thread{'s' if THREADS > 1 else ''}; median {'CPU' if THREADS == 1 else 'wall'} seconds per epoch "
        f"(train + validation) over {BLOCKS} alternating blocks of {EPOCHS} "
        "epochs, first epoch of each block dropped. Targets: kdrun / hand <= 1.10; "
        "cached KD / scratch <= 1.05. The last column is each side's val accuracy after its last block.",
        f"Machine load at the start: {_load()}.",
        "",
        "| teacher -> student | teacher | kdrun s | hand s | kdrun / hand | cached KD / scratch (kdrun) "
        "| val acc kdrun / hand |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for pair in PAIRS:
        t, acc = compare(pair, data)
        for mode in ("live", "cached", "scratch"):
            kdrun_s, hand_s = t[f"kdrun {mode}"], t[f"hand {mode}"]
            kd_vs_scratch = f"{t['kdrun cached'] / t['kdrun scratch']:.2f}" if mode == "cached" else "-"
            label = f"{pair[1]} alone" if mode == "scratch" else f"{pair[0]} -> {pair[1]}"
            lines.append(
                f"| {label} | {mode} | {kdrun_s:.3f} | {hand_s:.3f} | **{kdrun_s / hand_s:.2f}** | "
                f"{kd_vs_scratch} | {acc[f'kdrun {mode}']:.3f} / {acc[f'hand {mode}']:.3f} |"
            )
        print("\n".join(lines[-3:]), flush=True)
    return [*lines, "", f"Machine load at the end: {_load()}.", ""]


if __name__ == "__main__":
    args = sys.argv[1:]
    if "--threads" in args:
        at = args.index("--threads")
        THREADS = int(args[at + 1])
        del args[at : at + 2]
    if args:  # e.g. `mlp:mlp` to measure one pair
        PAIRS = tuple(tuple(arg.split(":")) for arg in args)
    print("\n".join(measure()))
