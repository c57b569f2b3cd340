"""Training-step time of torchvision models, NCHW vs channels_last, side by side in one process.

    python benchmarks/layout.py

Backs the `channels_last` defaults in conf/model/*.yaml.
"""

import time

import torch
import torch.nn.functional as F

from kdrun.models import create_model

MODELS = ["mobilenet_v3", "efficientnet_b0", "resnet18", "resnet50"]
SHAPE, CLASSES, BATCH, STEPS = (1, 28, 28), 10, 64, 10


def ms_per_step(name: str, channels_last: bool) -> float:
    """Mean wall time of an Adam training step (forward, backward, update), after 3 warm-up steps."""
    spec = {"name": name, "variant": None, "args": {}, "pretrained": False, "bn_momentum": None}
    model = create_model({**spec, "channels_last": channels_last}, CLASSES, SHAPE)
    optimizer = torch.optim.Adam(model.parameters())
    x, y = torch.randn(BATCH, *SHAPE), torch.randint(0, CLASSES, (BATCH,))
    for step in range(STEPS + 3):
        if step == 3:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / STEPS * 1e3


def measure() -> list[str]:
    """Markdown lines: one row per model, both layouts and their ratio."""
    lines = [
        "## Memory layout: NCHW vs channels_last (training step, batch 64, 1x28x28, "
        f"{torch.get_num_threads()} threads)",
        "",
        "| model | NCHW ms/step | channels_last ms/step | speed-up |",
        "|---|---:|---:|---:|",
    ]
    for name in MODELS:
        nchw, nhwc = ms_per_step(name, False), ms_per_step(name, True)
        lines.append(f"| {name} | {nchw:.1f} | {nhwc:.1f} | {nchw / nhwc:.2f}x |")
        print(lines[-1], flush=True)
    return lines


if __name__ == "__main__":
    print("\n".join(measure()))
