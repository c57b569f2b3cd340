"""``dataset.*`` -> a ``TensorDataModule``: load, split, resize, normalise, fingerprint, loader settings."""

import hashlib
import os

import torch
from omegaconf import DictConfig

from kdrun.data.augment import Augment
from kdrun.data.datamodule import Split, TensorDataModule
from kdrun.data.memory import ByteImages, to_geometry, to_unit
from kdrun.data.sources import DATASETS
from kdrun.data.splitting import Part, split_source
from kdrun.data.stats import StatsStore, channel_stats, given_stats, streamed_stats
from kdrun.data.stream import Streamed
from kdrun.data.transforms import Mix, SampleAugment, build_augment, is_sample_augment
from kdrun.errors import KdrunConfigError


def build_datamodule(cfg: DictConfig, stats_store: StatsStore | None = None) -> TensorDataModule:
    """Load ``cfg.name``, split it, resize/convert it to what the config declares.

    ``stats_store``: where a streamed set's measured statistics are kept between runs
    (``kdrun.cache.stats``); without one they are measured at every build.
    """
    if cfg.name not in DATASETS:
        raise KdrunConfigError("dataset.name", cfg.name, f"allowed: {', '.join(sorted(DATASETS))}")
    source = DATASETS[cfg.name](cfg)
    if len(source.train[1]) == 0:
        raise KdrunConfigError("dataset.name", cfg.name, "the data set is empty")
    parts = split_source(source, cfg)
    if isinstance(parts[0][0], Streamed):
        (mean, std), stats_from = streamed_stats(parts[0][0], cfg, stats_store)
        splits, fingerprint = _in_files(parts, cfg, mean, std)
    else:
        splits, fingerprint, (mean, std) = _in_memory(parts, cfg)
        stats_from = "config" if cfg.get("mean") is not None else "measured"
    data = TensorDataModule(
        *splits, classes=source.classes, batch_size=cfg.batch_size, fingerprint=fingerprint
    )
    data.bad_files, data.name = source.bad_files, cfg.name
    data.normalization = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    data.stats_from = stats_from
    data.fingerprint_of = (cfg.get("fingerprint") or "stat") if data.streams else "tensors"
    _set_augment(data, cfg, mean, std)
    _set_loader(data, cfg)
    return data


def _in_files(
    parts: tuple[Part, ...], cfg: DictConfig, mean: torch.Tensor, std: torch.Tensor
) -> tuple[list, str]:
    """Streamed splits: the training split's statistics set on every split; their fingerprint."""
    for images, _ in parts:
        images.mean, images.std = mean, std
    return list(parts), _file_fingerprint(parts, cfg, mean, std)


def _in_memory(parts: tuple[Part, ...], cfg: DictConfig) -> tuple[list[Split], str, tuple]:
    """Tensors at the declared geometry, normalised with the training split's statistics.

    8-bit images that need no resizing stay bytes (``ByteImages``, normalised per batch, grey
    shown as RGB without a copy); others are converted to float32 once, resized, and normalised.
    """
    if all(_exact_as_bytes(x, cfg.image_size, cfg.channels) for x, _ in parts):
        stored = [(x.expand(-1, cfg.channels, -1, -1), y) for x, y in parts]
        mean, std = given_stats(cfg) or channel_stats(stored[0][0])
        splits = [(ByteImages(x, mean, std), y) for x, y in stored]
        return splits, _fingerprint(splits), (mean, std)
    floats = [(to_unit(x) if x.dtype == torch.uint8 else x, y) for x, y in parts]
    shaped = [(to_geometry(x, cfg.image_size, cfg.channels), y) for x, y in floats]
    mean, std = given_stats(cfg) or channel_stats(shaped[0][0])
    splits = [((x - mean) / std, y) for x, y in shaped]
    return splits, _fingerprint(splits), (mean, std)


def _exact_as_bytes(x: torch.Tensor, size: int, channels: int) -> bool:
    """uint8 images already size x size whose channels need no arithmetic (same count, or grey -> RGB)."""
    return x.dtype == torch.uint8 and x.shape[-2:] == (size, size) and x.shape[1] in (1, channels)


def _set_augment(data: TensorDataModule, cfg: DictConfig, mean: torch.Tensor, std: torch.Tensor) -> None:
    augment = cfg.get("augment")
    transforms = build_augment(augment, cfg.image_size) if is_sample_augment(augment) else []
    if transforms:
        data.augment = SampleAugment(augment, transforms)
    elif augment == "batch" and any(cfg.batch_augment.values()):
        data.augment = Augment(mean.flatten().tolist(), std.flatten().tolist(), **cfg.batch_augment)
    if cfg.get("mix") is not None:
        data.mix = Mix(cfg.mix, float(cfg.get("mix_alpha", 1.0)), data.num_classes)


def _set_loader(data: TensorDataModule, cfg: DictConfig) -> None:
    workers = cfg.get("num_workers")  # null: none for tensors in memory, some for files
    data.num_workers = (
        workers if workers is not None else (min(4, os.cpu_count() or 1) if data.streams else 0)
    )
    data.persistent_workers = bool(cfg.get("persistent_workers", True))
    data.prefetch_factor = cfg.get("prefetch_factor")
    pin = cfg.get("pin_memory")  # null: pinned when a GPU can take the batches
    data.pin_memory = torch.cuda.is_available() if pin is None else bool(pin)


def _file_fingerprint(parts: tuple[Part, ...], cfg: DictConfig, mean: torch.Tensor, std: torch.Tensor) -> str:
    """Streamed sets: the files (``dataset.fingerprint``: paths with sizes and modification times,
    or with the hash of their bytes), labels, geometry and statistics."""
    how = cfg.get("fingerprint") or "stat"
    digest = hashlib.sha256(b"stream" if how == "stat" else b"stream-content")
    for images, labels in parts:
        images.fingerprint(digest, how)
        digest.update(labels.numpy().tobytes())
    settings = (
        cfg.image_size,
        cfg.channels,
        cfg.get("eval_resize"),
        mean.flatten().tolist(),
        std.flatten().tolist(),
    )
    digest.update(repr(settings).encode())
    return digest.hexdigest()[:16]


def _fingerprint(splits: list) -> str:
    """A hash of the exact normalised inputs of each split: changes whenever the data or split does.

    Bytes in memory are hashed as the float32 inputs they give, a chunk at a time, so both
    storages of the same images have the same fingerprint (and share cache entries).
    """
    digest = hashlib.sha256()
    for x, y in splits:
        for part in x.chunks() if isinstance(x, ByteImages) else (x,):
            digest.update(part.numpy().tobytes())
        digest.update(y.numpy().tobytes())
    return digest.hexdigest()[:16]
