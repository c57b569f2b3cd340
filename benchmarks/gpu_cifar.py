"""GPU speed check: one short CIFAR-100-shaped cell, kdrun's epoch against a hand-written loop.

    python benchmarks/gpu_cifar.py [--root DIR] [--epochs 2] [--blocks 2] [--no-write]

The cell is the benchmark's first pair, resnet32x4 -> resnet8x4 with vanilla KD (T=4, alpha=0.9),
batch 64, on ``trainer.accelerator=gpu`` with ``bf16-mixed``. It reads CIFAR-100 from ``--root``
(torchvision's layout) when it is there, and otherwise trains on random CIFAR-100-shaped tensors
(45,000 train / 5,000 val images, 3x32x32, 100 classes) and says so: speed does not depend on
the pixels. Reported: kdrun's median epoch (train + validation) and images/s, the same with
``compile=true``, and the hand loop of ``benchmarks/overhead.py`` on the same GPU, models and
batches, once with the data kept on the GPU and once copied per batch as kdrun does; blocks
alternate so drift hits every side. Writes the GPU section of docs/performance.md. Without a
CUDA GPU it prints one line and exits 2.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

VAL_ACC: dict[str, float] = {}  # the hand loop's last validation accuracy
NO_GPU = "gpu_cifar: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured"


def _data(root: Path | None):
    from kdrun.data import TensorDataModule, build_datamodule

    if root is not None and (root / "cifar-100-python").is_dir():
        cfg = _cfg("dataset=cifar100", f"dataset.root={root}", "dataset.batch_size=64").dataset
        return build_datamodule(cfg), f"CIFAR-100 from {root}"
    g = torch.Generator().manual_seed(0)
    train = (torch.randn(45_000, 3, 32, 32, generator=g), torch.randint(0, 100, (45_000,), generator=g))
    val = (torch.randn(5_000, 3, 32, 32, generator=g), torch.randint(0, 100, (5_000,), generator=g))
    classes = [str(i) for i in range(100)]
    source = "random CIFAR-100-shaped tensors (no data set on disk: pass --root to use CIFAR-100)"
    return TensorDataModule(train, val, val, classes, 64, "random-cifar100"), source


def _cfg(*overrides: str):
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        return compose(
            "train",
            overrides=[
                "model@teacher=resnet32x4",
                "model@student=resnet8x4",
                "logger=csv",
                "trainer.accelerator=gpu",
                "trainer.precision=bf16-mixed",
                "trainer.deterministic=false",
                *overrides,
            ],
        )


def _hand_epochs(student, teacher, data, epochs: int, T: float, alpha: float, on_device: bool) -> list[float]:
    """overhead.py's loop on the GPU under bf16 autocast; ``on_device``: the tensors live there."""
    import torch.nn.functional as F

    from kdrun.losses import kd_loss

    device = torch.device("cuda")
    (x, y), (vx, vy) = ((data.splits[s][0][:], data.splits[s][1]) for s in ("train", "val"))  # as float32
    if on_device:
        x, y, vx, vy = x.to(device), y.to(device), vx.to(device), vy.to(device)
    steps = epochs * -(-len(y) // data.batch_size)
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    seconds = []
    for _ in range(epochs):
        torch.cuda.synchronize()
        start = time.perf_counter()
        student.train()
        order = torch.randperm(len(y), device=x.device)
        for idx in order.split(data.batch_size):
            xb, yb = x[idx].to(device, non_blocking=True), y[idx].to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = student(xb)
                with torch.no_grad():
                    t_logits = teacher(xb)
                loss = alpha * kd_loss(logits.float(), t_logits.float(), T) + (1 - alpha) * F.cross_entropy(
                    logits.float(), yb
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        student.eval()
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            pairs = zip(vx.split(512), vy.split(512), strict=True)
            correct = sum(int((student(a.to(device)).argmax(1) == b.to(device)).sum()) for a, b in pairs)
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - start)
    VAL_ACC["hand"] = correct / len(vy)
    return seconds


def measure(root: Path | None, epochs: int, blocks: int) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import overhead

    from kdrun.models.build import model_spec
    from kdrun.models.factory import create_model
    from kdrun.strategies import STRATEGIES

    data, source = _data(root)
    print(f"gpu_cifar: data: {source}", flush=True)
    n_train = len(data.splits["train"][1])

    def model(section):
        torch.manual_seed(0)
        return create_model(model_spec(section), data.num_classes, data.input_shape)

    def kdrun_run(*overrides: str):
        cfg = _cfg(*overrides)
        teacher = model(cfg.teacher).eval().requires_grad_(False)
        strategy = STRATEGIES["vanilla"](model(cfg.student), teacher, T=4.0, alpha=0.9)
        return lambda: overhead.kdrun_epochs(strategy, data, cfg, epochs)

    def hand_run(on_device: bool):
        cfg = _cfg()
        teacher = model(cfg.teacher).cuda().eval().requires_grad_(False)
        return lambda: _hand_epochs(model(cfg.student).cuda(), teacher, data, epochs, 4.0, 0.9, on_device)

    sides = {
        "kdrun": lambda: kdrun_run()(),
        "kdrun compile=true": lambda: kdrun_run("compile=true")(),
        "hand, data on the GPU": lambda: hand_run(True)(),
        "hand, batches copied": lambda: hand_run(False)(),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    for block in range(blocks):
        for name, run in sides.items():
            seconds = run()
            times[name] += seconds[1:]  # first epoch of a block: warm-up (cuDNN autotune, compile)
            print(
                f"gpu_cifar: block {block + 1}/{blocks} {name}: {', '.join(f'{s:.2f}' for s in seconds)} s",
                flush=True,
            )
    median = {name: statistics.median(t) for name, t in times.items()}
    gpu = torch.cuda.get_device_name()
    lines = [
        "## GPU: a CIFAR-100 cell, kdrun vs a hand-written loop (`benchmarks/gpu_cifar.py`)",
        "",
        f"{gpu}; resnet32x4 -> resnet8x4, vanilla KD (live teacher), batch 64, bf16-mixed, Adam + cosine; "
        f"data: {source}; {n_train} train images an epoch. Median seconds per epoch (train + "
        f"validation) over {blocks} alternating blocks of {epochs} epochs, the first of each block dropped.",
        "",
        "| side | s / epoch | train images/s | / hand (data on GPU) |",
        "|---|---:|---:|---:|",
    ]
    base = median["hand, data on the GPU"]
    for name, s in median.items():
        lines.append(f"| {name} | {s:.2f} | {n_train / s:,.0f} | {s / base:.2f} |")
    return [*lines, ""]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="folder with torchvision's cifar-100-python")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per block (default 2)")
    parser.add_argument("--blocks", type=int, default=2, help="alternating blocks per side (default 2)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print(NO_GPU, file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    lines = measure(args.root, args.epochs, args.blocks)
    print("\n".join(lines))
    if not args.no_write:
        import run

        run.write("gpu", lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
