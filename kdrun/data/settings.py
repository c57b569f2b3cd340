"""Checks of the ``dataset.*`` keys that shape how data is read; ``kdrun.config.validate`` calls them."""

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from kdrun.config.schema import MAX_SEED, MISSING, choice, number
from kdrun.data.transforms import build_augment
from kdrun.errors import KdrunConfigError

BAD_FILE_ACTIONS = ("error", "skip")
STORAGE = ("auto", "memory", "stream")
FINGERPRINTS = ("stat", "content")  # what a streamed set's fingerprint reads of its files
FILE_SETS = ("imagefolder", "mnist", "fashion_mnist", "cifar10", "cifar100")  # sets that can be streamed
MIX = ("mixup", "cutmix")
# Strategies that read a sample's class index (DKD's target mask) or per-sample targets by index
# (soft-label files): a mixed batch has neither.
HARD_LABEL_STRATEGIES = ("dkd", "soft_labels")


@dataclass
class DatasetOptions:
    """The ``dataset`` keys every data set has (a set's own keys are checked by ``check_dataset``)."""

    batch_size: int = number(MISSING, ge=1, integer=True)
    image_size: int = number(MISSING, ge=1, integer=True)  # inputs are resized to this side
    channels: int = choice(MISSING, 1, 3)
    download: bool = choice(MISSING, True, False)
    limit: Any = number(MISSING, ge=1, integer=True, optional=True)


@dataclass
class SplitOptions:
    """``dataset.split``: the seed of the fixed split (its sizes are checked against the data)."""

    seed: int = number(MISSING, ge=0, le=MAX_SEED, integer=True)


def check_dataset(dataset: DictConfig, strategy: str | None = None) -> None:
    """Raise ``KdrunConfigError`` for the first bad ``dataset.*`` value of the keys checked here."""
    _choice(dataset, "mix", MIX, nullable=True)
    _number(dataset, "mix_alpha", 0, lo_open=True)
    if dataset.get("mix") is not None and strategy in HARD_LABEL_STRATEGIES:
        raise KdrunConfigError(
            "dataset.mix",
            dataset.mix,
            f"not with strategy={strategy}, which needs one class per sample; allowed: null",
        )
    _choice(dataset, "on_bad_file", BAD_FILE_ACTIONS)
    _choice(dataset, "storage", STORAGE)
    if dataset.get("storage") == "stream" and dataset.name not in FILE_SETS:
        raise KdrunConfigError(
            "dataset.storage", "stream", f"only for {', '.join(FILE_SETS)}; {dataset.name} is held in memory"
        )
    _choice(dataset, "fingerprint", FINGERPRINTS)
    _number(dataset, "memory_budget_gb", 0, lo_open=True)
    for key in ("num_workers", "prefetch_factor", "eval_resize", "stats_sample"):
        _number(dataset, key, 0 if key == "num_workers" else 1, integer=True, nullable=True)
    for key in ("persistent_workers", "pin_memory"):
        _choice(dataset, key, (True, False), nullable=True)
    if dataset.get("eval_resize") is not None and dataset.eval_resize < dataset.image_size:
        raise KdrunConfigError(
            "dataset.eval_resize",
            dataset.eval_resize,
            f"must be >= dataset.image_size ({dataset.image_size})",
        )
    for key in ("mean", "std"):
        value = dataset.get(key)
        if value is None:
            continue
        ok = not isinstance(value, str) and len(value) == dataset.channels
        if not ok or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value):
            raise KdrunConfigError(
                f"dataset.{key}", value, f"a list of {dataset.channels} numbers (one per channel)"
            )
        if key == "std" and min(value) <= 0:
            raise KdrunConfigError("dataset.std", list(value), "every value must be > 0")
    if (dataset.get("mean") is None) != (dataset.get("std") is None):
        raise KdrunConfigError("dataset.mean", dataset.get("mean"), "give mean and std together, or neither")
    augment = dataset.get("augment")
    if augment == "batch":  # the batch augmentation on the device
        batch = dataset.get("batch_augment")
        if batch is None:
            raise KdrunConfigError(
                "dataset.batch_augment",
                None,
                "dataset.augment=batch needs {crop_padding: N, flip: true|false, color_jitter: J} "
                "(see dataset/imagefolder.yaml)",
            )
        _number(batch, "crop_padding", 0, integer=True, prefix="dataset.batch_augment.")
        _choice(batch, "flip", (True, False), prefix="dataset.batch_augment.")
        _number(batch, "color_jitter", 0, 1, prefix="dataset.batch_augment.")
    elif augment is not None:
        build_augment(augment, dataset.image_size)


def _choice(
    node: DictConfig, key: str, allowed: tuple, nullable: bool = False, prefix: str = "dataset."
) -> None:
    if key not in node or (nullable and node[key] is None):
        return
    if node[key] not in allowed or isinstance(node[key], bool) != isinstance(allowed[0], bool):
        raise KdrunConfigError(f"{prefix}{key}", node[key], f"allowed: {', '.join(map(_text, allowed))}")


def _number(
    node: DictConfig,
    key: str,
    lo: float,
    hi: float = float("inf"),
    *,
    lo_open: bool = False,
    integer: bool = False,
    nullable: bool = False,
    prefix: str = "dataset.",
) -> None:
    if key not in node or (nullable and node[key] is None):
        return
    value: Any = node[key]
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or (value <= lo if lo_open else value < lo) or value > hi:
        bound = f"> {lo:g}" if lo_open else f">= {lo:g}"
        upper = "" if hi == float("inf") else f" and <= {hi:g}"
        raise KdrunConfigError(
            f"{prefix}{key}", value, f"must be {'an integer' if integer else 'a number'} {bound}{upper}"
        )


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)
