"""Is the latency kdrun reports stable, and how does it scale with the batch?

    python benchmarks/latency.py

For each model, kdrun's own measurement (``kdrun.measure.latency_ms``: torch.utils.benchmark's
adaptive autorange, 1 thread, warmed up) is repeated REPEATS times at each batch size, the models
interleaved so drift on a shared machine hits all of them. Reported: the median over repeats,
the IQR that a single measurement reports (median over repeats), and the spread of the repeats
((max - min) / median): what a user sees when re-running the same command.
"""

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdrun.measure import latency_ms  # noqa: E402
from kdrun.models.build import model_spec  # noqa: E402
from kdrun.models.factory import create_model  # noqa: E402

MODELS, BATCHES, REPEATS, MIN_RUN_TIME = ("mlp", "cnn", "mobilenet_v3", "resnet18"), (1, 8, 64, 256), 7, 0.5
SHAPE, CLASSES = (1, 28, 28), 10


def _model(name: str) -> torch.nn.Module:
    from hydra import compose, initialize_config_module

    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        cfg = compose("train", overrides=[f"model@student={name}"])
    return create_model(model_spec(cfg.student), CLASSES, SHAPE).eval()


def measure() -> list[str]:
    models = {name: _model(name) for name in MODELS}
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {
        k: [] for k in ((name, batch) for name in MODELS for batch in BATCHES)
    }
    for _ in range(REPEATS):
        for (name, batch), runs in samples.items():
            runs.append(latency_ms(models[name], SHAPE, batch, threads=1, min_run_time=MIN_RUN_TIME))
    lines = [
        "## Latency: stability and scaling (`benchmarks/latency.py`)",
        "",
        f"kdrun's latency measurement (1 thread, `measure.min_run_time={MIN_RUN_TIME}`), repeated {REPEATS} "
        "times per cell, models and batch sizes interleaved. *IQR* is what one measurement reports "
        "(median over repeats): the spread within one measurement. Across repeats: the IQR and the "
        "full range (max - min) of the repeated medians, relative to their median: what re-running "
        "the same command shows.",
        "",
        "| model | batch | ms (median) | IQR ms | IQR / median | repeats: IQR | repeats: range | ms/image |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (name, batch), runs in samples.items():
        medians = [m for m, _ in runs]
        iqrs = [i for _, i in runs if i is not None] or [float("nan")]  # None: too few blocks
        median, iqr = statistics.median(medians), statistics.median(iqrs)
        quartiles = statistics.quantiles(medians, n=4)
        spread, across = (max(medians) - min(medians)) / median, (quartiles[2] - quartiles[0]) / median
        lines.append(
            f"| {name} | {batch} | {median:.3f} | {iqr:.3f} | {100 * iqr / median:.1f}% | "
            f"{100 * across:.1f}% | {100 * spread:.1f}% | {median / batch:.4f} |"
        )
    return [*lines, ""]


if __name__ == "__main__":
    print("\n".join(measure()))
