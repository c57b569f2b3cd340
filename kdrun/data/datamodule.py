"""A LightningDataModule over in-memory tensors: fixed splits, whole-batch indexing, a fingerprint."""

import hashlib
import os

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from sklearn.model_selection import train_test_split
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from kdrun.data.augment import Augment
from kdrun.data.replay import StoredViews, ViewSampler
from kdrun.data.sources import DATASETS
from kdrun.data.stream import FileImages, Samples
from kdrun.data.transforms import build_augment, describe, is_sample_augment
from kdrun.errors import KdrunConfigError

Split = tuple[torch.Tensor, torch.Tensor]


class IndexedTensors(Dataset):
    """``(x, y, index)`` rows of two tensors, fetched a whole batch per call.

    The loader hands over a batch's index list; one conversion to a tensor, then tensor indexing
    (``TensorDataset`` would index each tensor with the Python list: ~0.3 ms a batch).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: list[int] | int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        return self.x[idx], self.y[idx], idx


class TensorDataModule(L.LightningDataModule):
    """Train/val/test tensors; batches are ``(x, y, sample_index)``.

    Each batch is one tensor-indexing call (a BatchSampler handed to the dataset), not B calls
    to ``__getitem__`` plus a collate: for in-memory data the per-sample Python work would cost
    more than a small model's step.
    """

    def __init__(
        self,
        train: Split,
        val: Split,
        test: Split,
        classes: list[str],
        batch_size: int,
        fingerprint: str,
        shuffle_seed: int = 0,
    ) -> None:
        super().__init__()
        self.splits = {"train": train, "val": val, "test": test}
        self.classes = classes
        self.batch_size = batch_size
        self.fingerprint = fingerprint
        self.normalization: dict[str, list[float]] | None = None  # per-channel mean/std applied to inputs
        self.build_threads: int | None = None  # torch threads when the tensors were normalised
        self.shuffle_seed = shuffle_seed
        self.shuffle_generator: torch.Generator | None = None  # the last shuffled loader's
        # Random per-sample changes to training inputs: on whole batches on their device (Augment),
        # or a torchvision.transforms.v2 pipeline per sample in the loader (SampleAugment).
        self.augment: Augment | SampleAugment | None = None
        self.num_workers = 0  # DataLoader worker processes (0: batches are built in the main process)
        self.persistent_workers = True
        self.prefetch_factor: int | None = None  # batches each worker loads ahead (null: torch's 2)
        self.pin_memory = False
        self.mix: Mix | None = None  # Mixup / CutMix of whole training batches (labels become soft)
        # kd.cache_logits=views: training batches are stored views (kdrun.cache.views), not fresh draws.
        self.views: StoredViews | None = None
        self.bad_files: list[dict[str, str]] = []  # files left out (dataset.on_bad_file=skip): path, reason

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def streams(self) -> bool:
        """Whether the images stay in their files and are decoded per sample (dataset.storage)."""
        return isinstance(self.splits["train"][0], FileImages)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.splits["train"][0].shape[1:])

    def summary(self) -> dict[str, object]:
        """What results.json records about how the data was read (beyond its splits' sizes)."""
        return {
            "storage": "stream" if self.streams else "memory",
            "bad_files": {"count": len(self.bad_files), "files": self.bad_files},
        }

    def head(self, n: int) -> "TensorDataModule":
        """The same data with only the first ``n`` training samples (val and test unchanged)."""
        x, y = self.splits["train"]
        digest = hashlib.sha256(f"{self.fingerprint}:head{n}".encode()).hexdigest()[:16]
        first = x.take(range(min(n, len(x)))) if isinstance(x, FileImages) else x[:n]
        head = TensorDataModule(
            (first, y[:n]), self.splits["val"], self.splits["test"], self.classes, self.batch_size, digest
        )
        head.augment, head.num_workers, head.pin_memory = self.augment, self.num_workers, self.pin_memory
        head.persistent_workers, head.prefetch_factor = self.persistent_workers, self.prefetch_factor
        head.normalization, head.mix = self.normalization, self.mix
        return head

    def loader(
        self,
        split: str,
        shuffle: bool = False,
        batch_size: int | None = None,
        shard: tuple[int, int] | None = None,
        augment: bool = False,
    ) -> DataLoader:
        """A DataLoader over one split; ``shuffle`` draws from a generator seeded by the run.

        ``shard=(rank, world_size)``: this process's share of every batch (``ShardedBatches``).
        ``augment``: apply a per-sample pipeline (``SampleAugment``) — the training loader only;
        with ``views`` set, show each image as one of its stored views instead (``ViewSampler``).
        Tensors in memory are fetched a batch per call; files, or samples to transform, one by
        one in worker processes, in the same batches and order.
        """
        x, y = self.splits[split]
        sample_augment = (
            self.augment.transforms if augment and isinstance(self.augment, SampleAugment) else None
        )
        views = self.views if augment else None
        per_sample = isinstance(x, FileImages) or sample_augment is not None or views is not None
        if per_sample:
            mean, std = (torch.tensor(self.normalization[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
            dataset = views.samples(x, y, mean, std) if views else Samples(x, y, mean, std, sample_augment)
        else:
            dataset = IndexedTensors(x, y)
        if shuffle:
            # One generator per loader; each epoch draws its order from it. A resumed fit restores
            # its state (kdrun.training.checkpointing.TrainingRandomness).
            self.shuffle_generator = torch.Generator().manual_seed(self.shuffle_seed)
            order = (
                ViewSampler(len(y), views.count, self.shuffle_generator)
                if views
                else RandomSampler(dataset, generator=self.shuffle_generator)
            )
        else:
            order = SequentialSampler(dataset)
        batches = BatchSampler(order, batch_size or self.batch_size, drop_last=False)
        batches = batches if shard is None else ShardedBatches(batches, *shard)
        if not per_sample:
            return DataLoader(
                dataset,
                sampler=batches,
                batch_size=None,
                num_workers=self.num_workers,
                pin_memory=self.pin_memory,
            )
        workers = {"persistent_workers": self.persistent_workers, "prefetch_factor": self.prefetch_factor}
        return DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            **(workers if self.num_workers else {}),
        )

    def train_dataloader(self) -> DataLoader:
        # Several processes (DDP) split each batch; validation runs whole in each (kdrun.training.fit).
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return self.loader(
                "train", shuffle=True, shard=(trainer.global_rank, trainer.world_size), augment=True
            )
        return self.loader("train", shuffle=True, augment=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, ...], dataloader_idx: int) -> tuple:
        """Training batches get a batch ``Augment`` (a draw per sample), then ``mix``, on their device.

        Every model of the step (teacher and student) sees the one mixed batch.
        """
        if self.trainer is None or not self.trainer.training:
            return batch
        x, y, index = batch
        if isinstance(self.augment, Augment) and self.views is None:
            x = self.augment(x)
        if self.mix is not None:
            x, y = self.mix(x, y)
        return x, y, index


class ShardedBatches(Sampler[list[int]]):
    """Process ``rank``'s share of each batch of ``batches``: every ``world_size``-th index.

    The processes together see the batches, batch order and number of steps of one process, so a
    DDP run keeps the global batch size and the learning-rate schedule. A last batch with fewer
    samples than processes is left out: every process must take the same number of steps.
    """

    def __init__(self, batches: BatchSampler, rank: int, world_size: int) -> None:
        self.batches, self.rank, self.world_size = batches, rank, world_size

    def __iter__(self):
        for batch in self.batches:
            if len(batch) >= self.world_size:
                yield batch[self.rank :: self.world_size]

    def __len__(self) -> int:
        full, last = divmod(len(self.batches.sampler), self.batches.batch_size)
        return full + (last >= self.world_size)


def build_datamodule(cfg: DictConfig) -> TensorDataModule:
    """Load ``cfg.name``, split it, resize/convert it to what the config declares."""
    if cfg.name not in DATASETS:
        raise KdrunConfigError("dataset.name", cfg.name, f"allowed: {', '.join(sorted(DATASETS))}")
    source = DATASETS[cfg.name](cfg)
    (x, y), classes = source.train, source.classes
    if len(y) == 0:
        raise KdrunConfigError("dataset.name", cfg.name, "the data set is empty")
    split = cfg.split
    if source.test is None:
        x, test_x, y, test_y = _stratified(x, y, split.test, split.seed, "dataset.split.test")
    else:
        test_x, test_y = source.test
    if source.val is not None:  # the set's own validation images (imagefolder's val/)
        val_x, val_y = source.val
    else:
        x, val_x, y, val_y = _stratified(x, y, split.val, split.seed, "dataset.split.val")
    if cfg.limit is not None:
        x, y = _take(x, range(min(cfg.limit, len(y)))), y[: cfg.limit]
    parts = ((x, y), (val_x, val_y), (test_x, test_y))
    if isinstance(x, FileImages):
        mean, std = _given_stats(cfg) or channel_stats(_stats_sample(x, cfg.get("stats_sample") or 2000))
        for images, _ in parts:
            images.mean, images.std = mean, std
        splits = list(parts)
        fingerprint = _file_fingerprint(splits, cfg, mean, std)
    else:
        train_x, val_x, test_x = (_shape(t, cfg.image_size, cfg.channels) for t in (x, val_x, test_x))
        mean, std = _given_stats(cfg) or channel_stats(train_x)
        splits = [
            ((t - mean) / std, labels) for t, labels in ((train_x, y), (val_x, val_y), (test_x, test_y))
        ]
        fingerprint = _fingerprint(splits)
    data = TensorDataModule(*splits, classes=classes, batch_size=cfg.batch_size, fingerprint=fingerprint)
    data.bad_files = source.bad_files
    data.normalization = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    data.build_threads = torch.get_num_threads()  # recorded; the tensors no longer depend on it
    augment = cfg.get("augment")
    transforms = build_augment(augment, cfg.image_size) if is_sample_augment(augment) else []
    if transforms:
        data.augment = SampleAugment(augment, transforms)
    elif augment == "batch" and any(cfg.batch_augment.values()):
        data.augment = Augment(mean.flatten().tolist(), std.flatten().tolist(), **cfg.batch_augment)
    if cfg.get("mix") is not None:
        data.mix = Mix(cfg.mix, float(cfg.get("mix_alpha", 1.0)), len(classes))
    workers = cfg.get("num_workers")  # null: none for tensors in memory, some for files
    data.num_workers = (
        workers if workers is not None else (min(4, os.cpu_count() or 1) if data.streams else 0)
    )
    data.persistent_workers = bool(cfg.get("persistent_workers", True))
    data.prefetch_factor = cfg.get("prefetch_factor")
    pin = cfg.get("pin_memory")  # null: pinned when a GPU can take the batches
    data.pin_memory = torch.cuda.is_available() if pin is None else bool(pin)
    return data


class Mix:
    """Mixup or CutMix (torchvision.transforms.v2) of a batch: (B, C, H, W), (B,) -> same, (B, K) labels."""

    def __init__(self, kind: str, alpha: float, num_classes: int) -> None:
        from torchvision.transforms import v2

        self.transform = (v2.MixUp if kind == "mixup" else v2.CutMix)(alpha=alpha, num_classes=num_classes)
        self.settings = {"kind": kind, "alpha": alpha}  # part of cache keys

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.transform(x, y)


class SampleAugment:
    """A per-sample torchvision.transforms.v2 pipeline (``dataset.augment`` a name or entries)."""

    def __init__(self, config: object, transforms: list) -> None:
        self.transforms = transforms
        self.settings = describe(config)  # part of cache keys


def _given_stats(cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor] | None:
    if cfg.get("mean") is None:
        return None
    shape = (1, cfg.channels, 1, 1)
    return torch.tensor(list(cfg.mean), dtype=torch.float32).view(shape), torch.tensor(
        list(cfg.std), dtype=torch.float32
    ).view(shape)


def _stats_sample(images: FileImages, count: int) -> torch.Tensor:
    """Up to ``count`` training images, evenly spaced in the split's order, decoded: (n, C, S, S)."""
    n = len(images)
    index = range(n) if n <= count else np.linspace(0, n - 1, count).round().astype(int)
    return torch.stack([images.pixels(int(i)) for i in index])


def _take(x: torch.Tensor | FileImages, index) -> torch.Tensor | FileImages:
    if isinstance(x, FileImages):
        return x.take(list(index))
    return x[torch.as_tensor(list(index), dtype=torch.long)]


def _stratified(x: torch.Tensor | FileImages, y: torch.Tensor, size: int, seed: int, key: str) -> tuple:
    if not 0 < size < len(y):
        raise KdrunConfigError(key, size, f"must be between 1 and {len(y) - 1} (samples available)")
    try:
        keep, held = train_test_split(
            np.arange(len(y)), test_size=size, stratify=y.numpy(), random_state=seed
        )
    except ValueError as err:  # too few samples per class for a stratified split
        raise KdrunConfigError(key, size, str(err)) from None
    return _take(x, keep), _take(x, held), y[torch.as_tensor(keep)], y[torch.as_tensor(held)]


def _shape(x: torch.Tensor, size: int, channels: int) -> torch.Tensor:
    """Resize to size x size and replicate grey to RGB (or average RGB to grey) as declared."""
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if x.shape[1] != channels:
        x = x.mean(dim=1, keepdim=True).expand(-1, channels, -1, -1)
    return x.contiguous()


def channel_stats(x: torch.Tensor, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) std of (N, C, H, W) images, as float32 (1, C, 1, 1) tensors.

    Summed in float64 by NumPy in a fixed order: torch's float32 reductions split the work by
    thread count and round differently, which changed the normalised inputs, and with them the
    data fingerprint and every cache key, with ``OMP_NUM_THREADS``.
    """
    channels = x.shape[1]
    count = x.numel() // channels
    total = np.zeros(channels)
    for start in range(0, len(x), chunk):
        total += x[start : start + chunk].numpy().sum(axis=(0, 2, 3), dtype=np.float64)
    mean = total / count
    squares = np.zeros(channels)
    for start in range(0, len(x), chunk):
        part = x[start : start + chunk].numpy().astype(np.float64) - mean.reshape(1, -1, 1, 1)
        squares += np.square(part).sum(axis=(0, 2, 3))
    std = np.sqrt(squares / max(count - 1, 1))
    shape = (1, channels, 1, 1)
    return torch.tensor(mean, dtype=torch.float32).view(shape), torch.tensor(std, dtype=torch.float32).view(
        shape
    ).clamp_min(1e-6)


def _file_fingerprint(splits: list, cfg: DictConfig, mean: torch.Tensor, std: torch.Tensor) -> str:
    """Streamed sets: the files (paths, sizes, modification times), labels, geometry and statistics."""
    digest = hashlib.sha256(b"stream")
    for images, labels in splits:
        images.fingerprint(digest)
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


def _fingerprint(splits: list[Split]) -> str:
    """A hash of the exact tensors each split holds: changes whenever the data or split does."""
    digest = hashlib.sha256()
    for x, y in splits:
        digest.update(x.numpy().tobytes())
        digest.update(y.numpy().tobytes())
    return digest.hexdigest()[:16]
