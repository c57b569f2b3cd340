"""Teacher outputs on stored views (``kd.cache_logits=views``) against a live teacher, side by side.

    nice -n 10 python benchmarks/views.py        # prints the Markdown section; run.py writes it to the doc

The set: scikit-learn's 1,797 digits written as 32x32 grey PNG files and read through
``dataset=imagefolder`` with ``dataset.augment=cifar`` (pad-4 random crop + horizontal flip, drawn
per sample), so every epoch's inputs differ. A cnn teacher is trained once on it (with that
augmentation); then, for each seed, the same mlp student (same init) is trained with the same
optimizer, epochs and T/alpha: from scratch, with the live teacher (a forward per step), and from
the teacher's outputs on R = 1, 5, 20 stored views per image (all classes), and R = 20 with the top
3 only (rest ``uniform`` and ``zero``). Reported: last-epoch test top-1 (mean ± std over the
seeds), median epoch seconds relative to the scratch epoch of the same seed, the build of each
cache against a teacher training epoch, the break-even number of student runs, bytes per image,
and the soft targets' error of the top-k approximation.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import kdrun.training.fit as kdrun_fit  # noqa: E402
from kdrun.cache import Cache  # noqa: E402
from kdrun.cache.views import FILE, dense_logits, load_or_build, summarise  # noqa: E402
from kdrun.data import TensorDataModule, build_datamodule  # noqa: E402
from kdrun.models.build import build  # noqa: E402
from kdrun.strategies import STRATEGIES  # noqa: E402
from kdrun.training.callbacks import EpochLines  # noqa: E402
from kdrun.training.fit import fit  # noqa: E402

SEEDS = (0, 1, 2)
EPOCHS, TEACHER_EPOCHS = 20, 15
BLOCKS, BLOCK_EPOCHS = 5, 5  # epoch timing: blocks per side, alternating; epochs per block
T, ALPHA, TOPK = 4.0, 0.9, 3
# name -> (R, k, rest); None: no stored views
VARIANTS = {
    "scratch": None,
    "live teacher": None,
    "views R=1": (1, None, "uniform"),
    "views R=5": (5, None, "uniform"),
    "views R=20": (20, None, "uniform"),
    f"views R=20, top-{TOPK}, rest uniform": (20, TOPK, "uniform"),
    f"views R=20, top-{TOPK}, rest zero": (20, TOPK, "zero"),
}
# FKD's recommended ImageNet labels (its soft-label generator, 500 crops, top-5 "marginal smoothing",
# --use_fp16): per crop 4 fp16 box coordinates, a 1-byte flip flag, 5 indices + 5 values as fp16.
FKD_CROPS, FKD_BYTES_PER_CROP = 500, 4 * 2 + 1 + 2 * 5 * 2


def digits_folder(root: Path) -> None:
    """scikit-learn's digits as 32x32 8-bit grey PNG files, one folder per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = Image.fromarray((image * 255 / 16).astype(np.uint8))
        pixels.resize((32, 32), Image.BILINEAR).save(folder / f"{i:04d}.png")


def _cfg(root: Path, out: Path):
    from hydra import compose, initialize_config_module

    overrides = [
        "dataset=imagefolder",
        f"dataset.root={root}",
        "dataset.channels=1",
        "dataset.augment=cifar",
        "teacher=cnn",
        "student=mlp",
        "logger=none",
        f"paths.output_root={out}",
    ]
    from kdrun.config.roles import hydra_overrides

    with initialize_config_module(config_module="kdrun.conf", version_base="1.3"):
        return compose("train", overrides=hydra_overrides(overrides))


class _Timed(EpochLines):
    """kdrun's per-epoch line callback, recording each epoch's seconds (train + validation)."""

    seconds: list[float] = []

    def on_train_epoch_end(self, trainer, module) -> None:
        _Timed.seconds.append(time.perf_counter() - self.started)


def timed_fit(strategy, data: TensorDataModule, cfg, epochs: int, seed: int, log_dir: Path) -> list[float]:
    """Seconds of each epoch of kdrun's ``fit``."""
    _Timed.seconds = []
    kdrun_fit.EpochLines = _Timed
    try:
        fit(strategy, data, cfg, epochs=epochs, seed=seed, log_dir=log_dir, label="bench")
    finally:
        kdrun_fit.EpochLines = EpochLines
    return list(_Timed.seconds)


@torch.no_grad()
def top1(model: torch.nn.Module, data: TensorDataModule) -> float:
    model.eval()
    pairs = [(model(x).argmax(1), y) for x, y, _ in data.loader("test")]
    return 100 * sum(int((p == y).sum()) for p, y in pairs) / sum(len(y) for _, y in pairs)


def _strategy(name: str, student: torch.nn.Module, teacher: torch.nn.Module):
    if name == "scratch":
        return STRATEGIES["scratch"](student)
    return STRATEGIES["vanilla"](student, teacher, T=T, alpha=ALPHA)


def _views(strategy, data: TensorDataModule, cache: Cache, views: tuple) -> dict:
    R, k, rest = views
    return load_or_build(
        strategy, data, cache, OmegaConf.create({"views": R, "topk": k, "rest": rest, "seed": 0})
    )


def epoch_seconds(cfg, data: TensorDataModule, teacher, cache: Cache, tmp: Path) -> dict[str, float]:
    """Median epoch seconds of scratch, live-teacher and R=20 views students, timed in alternating
    blocks (scratch, live, views, scratch, ...) so that load on the machine hits all three; the
    first epoch of each block is dropped (warm-up)."""
    sides = {"scratch": None, "live teacher": None, "views R=20": VARIANTS["views R=20"]}
    samples: dict[str, list[float]] = {name: [] for name in sides}
    for block in range(BLOCKS):
        for name, views in sides.items():
            L.seed_everything(0, verbose=False)
            strategy = _strategy(name, build(cfg.student, data), teacher)
            if views is not None:
                _views(strategy, data, cache, views)
            epochs = timed_fit(strategy, data, cfg, BLOCK_EPOCHS, 0, tmp / f"time-{name}-{block}")
            data.views = None
            samples[name] += epochs[1:]
    return {name: statistics.median(s) for name, s in samples.items()}


def _mean_std(values: list[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def topk_error(stored: Path, classes: int) -> dict[tuple[str, float], float]:
    """Mean total-variation distance between the full and the top-k soft targets at T, over the
    stored views of the full-logit entry ``stored`` (KL is infinite for ``zero``, which drops mass)."""
    from safetensors.torch import load_file

    logits = load_file(str(stored))["values"].flatten(0, 1).float()
    kept = summarise(logits, TOPK)
    errors = {}
    for rest in ("uniform", "zero"):
        approx = dense_logits(kept["values"], kept["indices"], kept["rest"], classes, rest)
        for temperature in (1.0, T):
            p, q = (torch.softmax(z / temperature, 1) for z in (logits, approx))
            errors[(rest, temperature)] = float((p - q).abs().sum(1).mean() / 2)
    return errors


def measure() -> list[str]:
    torch.set_num_threads(1)  # one core per process: steadier epochs on a shared machine
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "digits", Path(tmp) / "outputs"
        digits_folder(root)
        cfg = _cfg(root, out)
        data = build_datamodule(cfg.dataset)
        L.seed_everything(0, verbose=False)
        teacher = build(cfg.teacher, data)
        teacher_epoch = statistics.median(
            timed_fit(STRATEGIES["scratch"](teacher), data, cfg, TEACHER_EPOCHS, 0, Path(tmp) / "t")[1:]
        )
        teacher.eval()
        cache = Cache(out / "cache")
        accuracy: dict[str, list[float]] = {name: [] for name in VARIANTS}
        built: dict[tuple[int, int | None], dict] = {}
        for seed in SEEDS:
            for name, views in VARIANTS.items():
                L.seed_everything(seed, verbose=False)
                student = build(cfg.student, data)
                strategy = _strategy(name, student, teacher)
                if views is not None:
                    built.setdefault(views[:2], _views(strategy, data, cache, views))
                timed_fit(strategy, data, cfg, EPOCHS, seed, Path(tmp) / f"{name}-{seed}")
                data.views = None
                accuracy[name].append(top1(student, data))
                print(f"seed {seed} {name}: top-1 {accuracy[name][-1]:.2f}", flush=True)
        seconds = epoch_seconds(cfg, data, teacher, cache, Path(tmp))
        print(seconds, flush=True)
        errors = topk_error(Path(built[(20, None)]["entry"]) / FILE, data.num_classes)
    return _section(data, teacher_epoch, accuracy, seconds, built, errors)


def _section(data, teacher_epoch, accuracy, seconds, built, errors) -> list[str]:
    images, tests = len(data.splits["train"][1]), len(data.splits["test"][1])
    scratch, live, views = (seconds[k] for k in ("scratch", "live teacher", "views R=20"))
    lines = [
        "## Teacher outputs on stored views (`benchmarks/views.py`)",
        "",
        "`nice -n 10 python benchmarks/run.py views` (about 10 minutes here). "
        f"One torch thread. {images} training digits (32x32 grey PNG files, `dataset=imagefolder "
        "dataset.augment=cifar`: pad-4 crop + flip per sample), cnn teacher trained "
        f"{TEACHER_EPOCHS} epochs with that augmentation, mlp student {EPOCHS} epochs per run, "
        f"T={T:g}, alpha={ALPHA}, Adam with cosine decay, seeds {', '.join(map(str, SEEDS))} (one "
        f"init per seed, shared by the rows). Test top-1: the last epoch's, on {tests} held-out "
        "images; bytes per image: the cache entry's file over the training images.",
        "",
        "| student trained with | test top-1 % (mean ± std) | bytes per image |",
        "|---|---|---|",
    ]
    for name, variant in VARIANTS.items():
        size = "-" if variant is None else f"{built[variant[:2]]['bytes_per_image']:.0f}"
        lines.append(f"| {name} | {_mean_std(accuracy[name])} | {size} |")
    lines += [
        "",
        f"Epoch time (train + validation), median of {BLOCKS} alternating blocks of {BLOCK_EPOCHS} "
        "epochs per side, first epoch of each block dropped:",
        "",
        "| student epoch | seconds | / scratch epoch |",
        "|---|---|---|",
        f"| scratch | {scratch:.3f} | 1.00 |",
        f"| live teacher | {live:.3f} | {live / scratch:.2f} |",
        f"| stored views (R=20) | {views:.3f} | {views / scratch:.2f} |",
        "",
        f"Building each cache, in seconds and in teacher training epochs ({teacher_epoch:.1f} s each), "
        f"and the break-even: the number of {EPOCHS}-epoch student runs whose saved teacher time "
        "(live epoch minus views epoch, above) pays for the build.",
        "",
        "| cache | build s | teacher training epochs | break-even student runs |",
        "|---|---|---|---|",
    ]
    saved = EPOCHS * (live - views)
    for (R, k), record in built.items():
        build_s = record["build_seconds"]
        runs = f"{build_s / saved:.2f}" if saved > 0 else "never"
        label = f"R={R}" + (f", top-{k}" if k else "")
        lines.append(f"| {label} | {build_s:.1f} | {build_s / teacher_epoch:.2f} | {runs} |")
    fkd = FKD_CROPS * FKD_BYTES_PER_CROP
    lines += [
        "",
        f"Top-{TOPK} of 10 classes: mean total-variation distance between the full and the approximated "
        "soft targets over the stored views of the R=20 entry (0 = identical, 1 = disjoint): "
        + ", ".join(f"rest {rest} {errors[(rest, t)]:.4f} at T={t:g}" for rest, t in errors)
        + ".",
        "",
        f"Storage against FKD: its recommended ImageNet labels take {FKD_BYTES_PER_CROP} B per crop (4 fp16 "
        f"box coordinates, a flip byte, 5 indices and 5 values as fp16) x {FKD_CROPS} crops = {fkd:,} B "
        "per image before pickling; kdrun's views at the same R and k with `dataset.augment=imagenet` "
        "take 32 B per view (5 int16 parameters, 5 fp16 values, 5 int16 indices, 1 fp16 rest logit): "
        "16,000 B per image.",
    ]
    return lines


if __name__ == "__main__":
    print("\n".join(measure()))
