"""kdrun against torchdistill on the same vanilla-KD recipe: seconds per epoch, same models and data.

    python benchmarks/torchdistill_compare.py             # both pairs; prints the Markdown section
    python benchmarks/torchdistill_compare.py cnn:mlp     # one pair

torchdistill is the reference KD framework; a user choosing between the two wants to know what
kdrun's Lightning machinery costs against it on the same recipe. Both sides get the same teacher
and student objects (kdrun's factory, seeded: same weights), the same in-memory tensors, batch
size, shuffling without workers, Adam with a per-step cosine decay, T and alpha, and validate
once per epoch. torchdistill runs its own ``DistillationBox`` built from a config equivalent to
its vanilla-KD sample (``configs/sample/ilsvrc2012/kd/resnet18_from_resnet34.yaml``: a
``WeightedSumLoss`` with one ``KDLoss`` term), driven by the epoch loop of its example script
(``examples/torchvision/image_classification.py``). Blocks of epochs alternate kdrun cached /
kdrun live / torchdistill so drift on a shared machine hits all three; the figure is the median
epoch with the first epoch of each block dropped (warm-up).
"""

import statistics
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import RandomSampler, SequentialSampler, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from overhead import _cfg, kdrun_epochs  # noqa: E402

from kdrun.data import TensorDataModule, build_datamodule  # noqa: E402
from kdrun.models.build import model_spec  # noqa: E402
from kdrun.models.factory import create_model  # noqa: E402
from kdrun.strategies import STRATEGIES  # noqa: E402
from kdrun.training.callbacks import recalibrate_batchnorm  # noqa: E402

PAIRS = (("resnet18", "mobilenet_v3"), ("cnn", "mlp"))
EPOCHS, BLOCKS = 3, 3  # epochs per block; blocks per side (alternating): ~4 minutes at one thread
SIDES = ("kdrun cached", "kdrun live", "torchdistill")
INSTALL = "`.venv/bin/pip install torchdistill` (measured with 1.1.5)"


@torch.inference_mode()
def accuracy(model: nn.Module, batches: Iterable) -> float:
    """Top-1 accuracy of ``model`` in eval mode over ``(x, y, ...)`` batches (torchdistill's ``evaluate``)."""
    model.eval()
    correct = total = 0
    for x, y, *_ in batches:
        correct += int((model(x).argmax(1) == y).sum())
        total += len(y)
    return correct / total


def torchdistill_config(epochs: int, steps: int, batch_size: int, T: float, alpha: float) -> dict:
    """The ``train`` section of torchdistill's vanilla-KD sample config, as the dict its YAML loads to.

    Kept from the sample: the loader, teacher/student, optimizer, scheduler and criterion keys. Changed
    to kdrun's recipe: Adam + cosine stepped every iteration (``scheduling_step: 1``), batch 64, no
    workers, no DataParallel wrapper (one CPU process). torchdistill's ``KDLoss`` weighs the hard
    cross-entropy by ``alpha`` and the soft term by ``beta``: kdrun's ``alpha`` is its ``beta``.
    """
    return {
        "num_epochs": epochs,
        "train_data_loader": {
            "dataset_id": "train",
            "sampler": {
                "class_or_func": RandomSampler,
                "kwargs": {"generator": torch.Generator().manual_seed(0)},
            },
            "kwargs": {"batch_size": batch_size, "num_workers": 0, "drop_last": False},
        },
        "val_data_loader": {
            "dataset_id": "val",
            "sampler": {"class_or_func": SequentialSampler, "kwargs": None},
            "kwargs": {"batch_size": batch_size, "num_workers": 0, "drop_last": False},
        },
        "teacher": {"forward_proc": "forward_batch_only", "sequential": [], "requires_grad": False},
        "student": {
            "forward_proc": "forward_batch_only",
            "adaptations": None,
            "sequential": [],
            "requires_grad": True,
            "frozen_modules": [],
        },
        "optimizer": {"key": "Adam", "kwargs": {"lr": 1e-3}},
        "scheduler": {"key": "CosineAnnealingLR", "kwargs": {"T_max": steps}, "scheduling_step": 1},
        "criterion": {
            "key": "WeightedSumLoss",
            "kwargs": {
                "sub_terms": {
                    "kd": {
                        "criterion": {
                            "key": "KDLoss",
                            "kwargs": {
                                "student_module_path": ".",
                                "student_module_io": "output",
                                "teacher_module_path": ".",
                                "teacher_module_io": "output",
                                "temperature": T,
                                "alpha": 1.0 - alpha,
                                "beta": alpha,
                                "reduction": "batchmean",
                            },
                        },
                        "weight": 1.0,
                    }
                }
            },
        },
    }


def torchdistill_epochs(
    teacher: nn.Module, student: nn.Module, data: TensorDataModule, epochs: int, T: float, alpha: float
) -> list[float]:
    """Seconds of each epoch (train + validation) of torchdistill's distillation box on ``data``."""
    from torchdistill.core.distillation import get_distillation_box  # optional: measure() checks for it

    datasets = {
        split: TensorDataset(data.splits[split][0][:], data.splits[split][1]) for split in ("train", "val")
    }
    steps = epochs * -(-len(datasets["train"]) // data.batch_size)
    config = torchdistill_config(epochs, steps, data.batch_size, T, alpha)
    # kdrun's trainer (deterministic: true) turns this on process-wide; torchdistill users run without it.
    torch.use_deterministic_algorithms(False)
    box = get_distillation_box(teacher, student, datasets, config, torch.device("cpu"), None, False, 1)
    seconds = []
    for epoch in range(box.num_epochs):  # examples/torchvision/image_classification.py: train()
        start = time.perf_counter()
        box.pre_epoch_process(epoch=epoch)
        for sample_batch, targets, supp_dict in box.train_data_loader:
            loss = box.forward_process(sample_batch, targets, supp_dict)
            box.post_forward_process(loss=loss)
            if not torch.isfinite(loss):
                raise ValueError(f"The training loop was broken due to loss = {loss}")
        accuracy(student, box.val_data_loader)
        box.post_epoch_process()
        seconds.append(time.perf_counter() - start)
    box.clean_modules()
    return seconds


def _median(blocks: list[list[float]]) -> float:
    return statistics.median(t for block in blocks for t in block[1:])


def compare(pair: tuple[str, str], data: TensorDataModule) -> tuple[dict[str, float], dict[str, float]]:
    """Median epoch seconds per side, and each side's validation accuracy after its last block.

    Every block trains a fresh student from the same seed. kdrun re-estimates BatchNorm statistics
    after a fit (``recalibrate_bn``, outside the timed epochs); torchdistill's student gets the same
    untimed pass before its accuracy is read, so the check compares what was learned.
    """
    cfg = _cfg(*pair)
    T, alpha = float(cfg.T), float(cfg.alpha)

    def model(section) -> nn.Module:
        torch.manual_seed(0)
        return create_model(model_spec(section), data.num_classes, data.input_shape)

    teacher = model(cfg.teacher).eval().requires_grad_(False)
    val = data.loader("val")
    accuracies: dict[str, float] = {}

    def kdrun_kd(cache: bool) -> list[float]:
        strategy = STRATEGIES["vanilla"](model(cfg.student), teacher, T=T, alpha=alpha)
        if cache:
            strategy.cache_teacher_logits(data.loader("train"))
        seconds = kdrun_epochs(strategy, data, cfg, EPOCHS)
        accuracies[f"kdrun {'cached' if cache else 'live'}"] = accuracy(strategy.student, val)
        return seconds

    def torchdistill_kd() -> list[float]:
        student = model(cfg.student)
        seconds = torchdistill_epochs(teacher, student, data, EPOCHS, T, alpha)
        recalibrate_batchnorm(student, data.loader("train", shuffle=True))
        accuracies["torchdistill"] = accuracy(student, val)
        return seconds

    runs = {
        "kdrun cached": lambda: kdrun_kd(True),
        "kdrun live": lambda: kdrun_kd(False),
        "torchdistill": torchdistill_kd,
    }
    blocks: dict[str, list[list[float]]] = {side: [] for side in SIDES}
    for _ in range(BLOCKS):
        for side, run in runs.items():
            blocks[side].append(run())
    return {side: _median(b) for side, b in blocks.items()}, accuracies


def measure() -> list[str]:
    """The ``## kdrun vs torchdistill`` Markdown section (a note on how to install it when it is missing)."""
    heading = "## kdrun vs torchdistill (`benchmarks/torchdistill_compare.py`)"
    try:
        import torchdistill
    except ImportError:
        return [heading, "", f"Not measured: torchdistill is not installed. Install it with {INSTALL}.", ""]
    torch.set_num_threads(min(2, torch.get_num_threads()))
    cfg = _cfg(*PAIRS[0])
    data = build_datamodule(cfg.dataset)
    n_train, n_val = len(data.splits["train"][1]), len(data.splits["val"][1])
    lines = [
        heading,
        "",
        f"One vanilla-KD recipe on both sides: kdrun's default data ({n_train} train / {n_val} val images, "
        f"{'x'.join(map(str, data.input_shape))}, in memory), batch {data.batch_size} shuffled without "
        f"workers, Adam lr 1e-3 with a per-step cosine decay, T={cfg.T:g}, alpha={cfg.alpha:g} "
        "(loss = alpha * T^2 * KL(p_t^T || p_s^T) + (1 - alpha) * CE), the same seeded teacher and student "
        "objects from kdrun's factory, the frozen teacher in eval mode, one validation pass per epoch, "
        f"{torch.get_num_threads()} torch thread(s). *kdrun cached*: `kdrun.training.fit.fit` on the "
        "`vanilla` strategy after `cache_teacher_logits` (kdrun's default: the teacher runs once, steps "
        "read its logits by sample index). *kdrun live*: the same without the cache (teacher forward "
        "every step). "
        f"*torchdistill* {torchdistill.__version__}: a `DistillationBox` (`get_distillation_box`) built "
        "from the `train` section of its vanilla-KD sample config (`WeightedSumLoss` over one `KDLoss` "
        f"term, which weighs CE by its `alpha` and the soft term by its `beta`: alpha={1 - cfg.alpha:g}, "
        f"beta={cfg.alpha:g}; `RandomSampler` over a `TensorDataset` of the same "
        "tensors, which torchdistill wraps to add per-sample `supp_dict`s), run by the epoch loop of its "
        "example script (`pre_epoch_process`, `forward_process` + `post_forward_process` per batch, "
        "an `evaluate`-style pass over its val loader, `post_epoch_process`) without its `MetricLogger` "
        "printing. kdrun runs with its default trainer settings (deterministic algorithms, CSV logger), "
        "torchdistill without deterministic algorithms, as its users run it. "
        f"Median seconds per epoch (train + validation) over {BLOCKS} alternating blocks of "
        f"{EPOCHS} epochs per side, first epoch of each block dropped; val acc is each side's student "
        "after its last block (BatchNorm statistics re-estimated, as kdrun does after a fit; chance is "
        f"{1 / data.num_classes:.2f}). The teacher is freshly initialised (untrained, as in `overhead.py`): "
        "the timing does not depend on its weights, and the accuracies show that each student learns, "
        "not what distillation gains. Target: kdrun / torchdistill < 1.",
        "",
        "| teacher -> student | kdrun cached s | kdrun live s | torchdistill s | cached / torchdistill | "
        "live / torchdistill | val acc (cached / live / torchdistill) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for pair in PAIRS:
        t, acc = compare(pair, data)
        cached, live, reference = (t[side] for side in SIDES)
        lines.append(
            f"| {pair[0]} -> {pair[1]} | {cached:.3f} | {live:.3f} | {reference:.3f} | "
            f"**{cached / reference:.2f}** | **{live / reference:.2f}** | "
            f"{' / '.join(f'{acc[side]:.3f}' for side in SIDES)} |"
        )
        print(lines[-1], flush=True)
    return [*lines, ""]


if __name__ == "__main__":
    if len(sys.argv) > 1:  # e.g. `cnn:mlp` to measure one pair
        PAIRS = tuple(tuple(arg.split(":")) for arg in sys.argv[1:])
    print("\n".join(measure()))
