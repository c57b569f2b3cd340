"""Speed options a user expects, each a config key, measured on this machine (cached-logit KD epochs).

    python benchmarks/options.py

For each student the same cached-logit KD epoch (kdrun's ``fit``, as in ``overhead.py``) runs
under each setting, settings interleaved block by block; the figure is the median epoch
(first epoch of each block dropped: it holds torch.compile's compilation, reported apart).
"""

import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import STRATEGIES, _cfg, build_datamodule, create_model, kdrun_epochs, model_spec  # noqa: E402

STUDENTS = ("mlp", "mobilenet_v3")
SETTINGS = {
    "default (fp32, eager, 2 threads)": [],
    "trainer.precision=bf16-mixed": ["trainer.precision=bf16-mixed"],
    "compile=true": ["compile=true"],
    "threads=1": ["threads=1"],
    "trainer.log_every_n_steps=1": ["trainer.log_every_n_steps=1"],
    "student.channels_last=false": ["student.channels_last=false"],
}
EPOCHS, BLOCKS = 3, 2


def _epochs(student: str, overrides: list[str], data) -> list[float]:
    cfg = _cfg("cnn", student, *overrides)
    torch.set_num_threads(cfg.threads or 2)
    torch.manual_seed(0)
    model = create_model(model_spec(cfg.student), data.num_classes, data.input_shape)
    teacher = create_model(model_spec(cfg.teacher), data.num_classes, data.input_shape).eval()
    strategy = STRATEGIES["vanilla"](model, teacher, T=4.0, alpha=0.9)
    strategy.cache_teacher_logits(data.loader("train"))
    return kdrun_epochs(strategy, data, cfg, EPOCHS)


def measure() -> list[str]:
    data = build_datamodule(_cfg("cnn", "mlp").dataset)
    lines = [
        "## Speed options (`benchmarks/options.py`)",
        "",
        f"Cached-logit KD epochs (train + validation) of each student on the default data, median of "
        f"{BLOCKS} interleaved blocks of {EPOCHS} epochs (first of each block dropped); *first epoch* "
        "is the extra time of a block's first epoch (torch.compile compiles there). Relative to the "
        "default setting measured in the same run.",
        "",
        "| student | setting | s / epoch | vs default | first epoch extra s |",
        "|---|---|---:|---:|---:|",
    ]
    for student in STUDENTS:
        runs: dict[str, list[list[float]]] = {name: [] for name in SETTINGS}
        for _ in range(BLOCKS):
            for name, overrides in SETTINGS.items():
                if name.startswith("student.channels_last") and student == "mlp":
                    continue  # no convolutions: the layout does not apply
                runs[name].append(_epochs(student, overrides, data))
        base = statistics.median(t for block in runs[next(iter(SETTINGS))] for t in block[1:])
        for name, blocks in runs.items():
            if not blocks:
                continue
            median = statistics.median(t for block in blocks for t in block[1:])
            first = statistics.median(block[0] for block in blocks) - median
            lines.append(f"| {student} | {name} | {median:.3f} | {median / base:.2f} | {first:.1f} |")
        print("\n".join(lines[-len(runs) :]), flush=True)
    torch.set_num_threads(2)
    return [*lines, ""]


if __name__ == "__main__":
    print("\n".join(measure()))
