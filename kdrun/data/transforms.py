"""Per-sample augmentation from torchvision.transforms.v2: pipelines by name or from YAML entries.

``dataset.augment`` is a name (``batch``: kdrun's own crop/flip/jitter of whole batches on their
device, ``kdrun.data.augment``; ``cifar``, ``imagenet``, ``randaugment``, ``autoaugment``,
``trivialaugment``, ``none``) or a list of ``{_target_: torchvision.transforms.v2.X, ...}``
entries. Only classes of ``torchvision.transforms.v2`` are built: a config never names arbitrary
code to run. The pipeline runs on each training sample (in the DataLoader's workers), never on
validation, test, BatchNorm re-estimation or teacher-logit caching.
"""

from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from kdrun.errors import KdrunConfigError

NAMES = ("batch", "cifar", "imagenet", "randaugment", "autoaugment", "trivialaugment", "none")
PREFIX = "torchvision.transforms.v2."


def is_sample_augment(augment: Any) -> bool:
    """Whether ``dataset.augment`` asks for a per-sample v2 pipeline (a name or a list of entries)."""
    return isinstance(augment, list | ListConfig) or (isinstance(augment, str) and augment != "batch")


def named(name: str, size: int) -> list[Callable]:
    """The transforms of a named pipeline for ``size`` x ``size`` outputs (``none``: empty)."""
    from torchvision.transforms import v2

    crop_flip = [v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip()]
    pipelines = {
        "cifar": crop_flip,
        "imagenet": [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()],
        "randaugment": [*crop_flip, v2.RandAugment()],
        "autoaugment": [*crop_flip, v2.AutoAugment(_policy(size))],
        "trivialaugment": [*crop_flip, v2.TrivialAugmentWide()],
        "none": [],
    }
    return pipelines[name]


def _policy(size: int):
    from torchvision.transforms import v2

    # AutoAugment's learned policies: the CIFAR-10 one for small images, the ImageNet one otherwise.
    return v2.AutoAugmentPolicy.CIFAR10 if size <= 64 else v2.AutoAugmentPolicy.IMAGENET


def from_entries(entries: Any, key: str = "dataset.augment") -> list[Callable]:
    """``[{_target_: torchvision.transforms.v2.Name, arg: value}, ...]`` -> transforms (allowlisted)."""
    from torchvision.transforms import v2

    built = []
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict | DictConfig) or "_target_" not in entry:
            raise KdrunConfigError(where, _plain(entry), f"must be a mapping with _target_: {PREFIX}<Name>")
        args = _plain(entry)
        target = str(args.pop("_target_"))
        name = target.removeprefix(PREFIX)
        cls = getattr(v2, name, None) if target.startswith(PREFIX) else None
        if not (isinstance(cls, type) and issubclass(cls, v2.Transform)) or name.startswith("_"):
            raise KdrunConfigError(
                f"{where}._target_", target, f"only transforms of {PREFIX}* are allowed ({_closest(name)})"
            )
        if "transforms" in args:  # Compose, RandomApply, RandomChoice, RandomOrder take a list
            args["transforms"] = from_entries(args["transforms"], f"{where}.transforms")
        try:
            built.append(cls(**args))
        except (TypeError, ValueError) as err:
            raise KdrunConfigError(where, target, f"bad arguments: {err}") from None
    return built


def _plain(value: Any) -> Any:
    return (
        OmegaConf.to_container(value, resolve=True) if isinstance(value, DictConfig | ListConfig) else value
    )


def _closest(name: str) -> str:
    import difflib

    from torchvision.transforms import v2

    options = [
        n for n in dir(v2) if isinstance(getattr(v2, n), type) and issubclass(getattr(v2, n), v2.Transform)
    ]
    match = difflib.get_close_matches(name, options, n=1)
    return f"closest: {PREFIX}{match[0]}" if match else f"e.g. {PREFIX}RandomHorizontalFlip"


def build_augment(augment: Any, size: int) -> list[Callable]:
    """``dataset.augment`` (a name or entries) -> its transforms; checked, raises ``KdrunConfigError``."""
    if isinstance(augment, str):
        if augment not in NAMES:
            import difflib

            closest = difflib.get_close_matches(augment, NAMES, n=1)
            hint = f" (closest: {closest[0]})" if closest else ""
            raise KdrunConfigError(
                "dataset.augment", augment, f"allowed: {', '.join(NAMES)}, or a list of v2 entries{hint}"
            )
        return named(augment, size)
    return from_entries(augment)


def to_pixels(image: Any) -> torch.Tensor:
    """PIL image (L or RGB) or float tensor -> float32 (C, H, W) in [0, 1], as the in-memory path scales.

    Divides by 255 like the in-memory path (v2.ToDtype multiplies by 1/255, which rounds
    differently), so streamed and in-memory inputs are the same tensors.
    """
    if isinstance(image, torch.Tensor):
        return image
    import numpy as np

    pixels = torch.from_numpy(np.array(image, dtype=np.uint8)).float().div_(255)
    return pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1).contiguous()


def describe(augment: Any) -> Any:
    """What enters cache keys and results.json for a per-sample pipeline."""
    return {"pipeline": _plain(augment)}


class SampleAugment:
    """A per-sample torchvision.transforms.v2 pipeline (``dataset.augment`` a name or entries)."""

    def __init__(self, config: object, transforms: list) -> None:
        self.transforms = transforms
        self.settings = describe(config)  # part of cache keys


class Mix:
    """Mixup or CutMix (torchvision.transforms.v2) of a batch: (B, C, H, W), (B,) -> same, (B, K) labels."""

    def __init__(self, kind: str, alpha: float, num_classes: int) -> None:
        from torchvision.transforms import v2

        self.transform = (v2.MixUp if kind == "mixup" else v2.CutMix)(alpha=alpha, num_classes=num_classes)
        self.settings = {"kind": kind, "alpha": alpha}  # part of cache keys

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(x, y)
