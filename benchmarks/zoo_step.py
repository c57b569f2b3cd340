"""CPU cost of one training step of CIFAR-zoo models on Fashion-MNIST's input (1 x 28 x 28).

    OMP_NUM_THREADS=1 python benchmarks/zoo_step.py

Forward, cross-entropy, backward and an SGD step at batch 64 on one thread, CPU seconds
(``time.process_time``) averaged over 3 steps after one warm-up step, and the CPU seconds a
55,000-image epoch would take at that rate: how docs/results.md chose the zoo pair of
``recipes/fashion_mnist``.
"""

import time

import torch

from kdrun.models.factory import create_model

MODELS = ["resnet20", "wrn_16_1", "resnet56", "wrn_40_2", "resnet8x4", "resnet32x4"]


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    print("| model | parameters | ms / step | CPU s / 55,000-image epoch |")
    print("|---|---:|---:|---:|")
    for name in MODELS:
        model = create_model({"name": name, "args": {}}, 10, (1, 28, 28))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)

        started, steps = 0.0, 3
        for i in range(steps + 1):  # the first is a warm-up
            if i == 1:
                started = time.process_time()
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
        cpu = (time.process_time() - started) / steps
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {name} | {params:.2f}M | {cpu * 1e3:.0f} | {cpu * 55000 / 64:.0f} |", flush=True)


if __name__ == "__main__":
    main()
