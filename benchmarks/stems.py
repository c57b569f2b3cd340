"""The headline pair's training step with the ImageNet and the small-input stem, side by side.

    python benchmarks/stems.py        # or: make bench SECTIONS=stems

`kdrun train teacher=resnet50 student=mobilenet_v3` on the embedded 28 px digits: `stem: auto`
gives both models the small-input stem (3x3 stride-1 first conv, no max-pool), which keeps
resnet50's maps 4x larger in each dimension. This measures what that costs per training step
(SGD, batch 64, 1x28x28, each model's shipped layout), reports CPU seconds next to wall seconds and
the load average (the machine is shared), and projects one teacher epoch on the 3,500 training images.
"""

import os
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from kdrun.models import create_model

# (config name, variant, channels_last as conf/teacher|student/<name>.yaml ship it)
MODELS = [("resnet50", None, False), ("mobilenet_v3", "small", True)]
SHAPE, CLASSES, BATCH, STEPS, TRAIN_IMAGES = (1, 28, 28), 10, 64, 3, 3500


def step_cost(name: str, variant: str | None, channels_last: bool, stem: str) -> tuple[float, float, float]:
    """(wall s, CPU s) per SGD training step after one warm-up step, and forward GFLOPs per image."""
    spec = {"name": name, "variant": variant, "args": {}, "stem": stem, "channels_last": channels_last}
    model = create_model(spec, CLASSES, SHAPE)
    with FlopCounterMode(display=False) as flops:
        model.eval()(torch.randn(1, *SHAPE))
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(BATCH, *SHAPE), torch.randint(0, CLASSES, (BATCH,))
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    for step in range(STEPS + 1):
        if step == 1:
            wall, cpu = time.perf_counter(), time.process_time()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    wall, cpu = (time.perf_counter() - wall) / STEPS, (time.process_time() - cpu) / STEPS
    return wall, cpu, flops.get_total_flops() / 1e9


def measure() -> list[str]:
    """Markdown lines: one row per model and stem, and the cifar / imagenet ratios."""
    load_before = os.getloadavg()[0]
    lines = [
        f"## Small-input stem: the headline pair's training step (batch {BATCH}, 1x28x28, "
        f"{torch.get_num_threads()} threads)",
        "",
        "| model | stem | GFLOPs / image | wall s / step | CPU s / step | epoch (3,500 images), CPU s |",
        "|---|---|---:|---:|---:|---:|",
    ]
    ratios = []
    for name, variant, channels_last in MODELS:
        costs = {stem: step_cost(name, variant, channels_last, stem) for stem in ("imagenet", "cifar")}
        for stem, (wall, cpu, gflops) in costs.items():
            epoch = cpu * -(-TRAIN_IMAGES // BATCH)
            lines.append(f"| {name} | {stem} | {gflops:.3f} | {wall:.2f} | {cpu:.2f} | {epoch:.0f} |")
            print(lines[-1], flush=True)
        ratios.append(f"{name} {costs['cifar'][1] / costs['imagenet'][1]:.1f}x")
    lines += [
        "",
        f"CPU time per step, small-input stem / ImageNet stem: {', '.join(ratios)}. Load average (1 min) "
        f"{load_before:.1f} before and {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores: wall "
        "times above CPU times are other processes' share.",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(measure()))
