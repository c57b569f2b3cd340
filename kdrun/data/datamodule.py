"""A LightningDataModule over in-memory tensors: fixed splits, whole-batch indexing, a fingerprint."""

import hashlib

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
from kdrun.data.sources import DATASETS
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
        self.augment: Augment | None = None  # random per-sample changes to training batches
        self.num_workers = 0  # DataLoader worker processes (0: batches are built in the main process)
        self.pin_memory = False
        self.bad_files: list[dict[str, str]] = []  # files left out (dataset.on_bad_file=skip): path, reason

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.splits["train"][0].shape[1:])

    def summary(self) -> dict[str, object]:
        """What results.json records about how the data was read (beyond its splits' sizes)."""
        return {"bad_files": {"count": len(self.bad_files), "files": self.bad_files}}

    def head(self, n: int) -> "TensorDataModule":
        """The same data with only the first ``n`` training samples (val and test unchanged)."""
        x, y = self.splits["train"]
        digest = hashlib.sha256(f"{self.fingerprint}:head{n}".encode()).hexdigest()[:16]
        head = TensorDataModule(
            (x[:n], y[:n]), self.splits["val"], self.splits["test"], self.classes, self.batch_size, digest
        )
        head.augment, head.num_workers, head.pin_memory = self.augment, self.num_workers, self.pin_memory
        return head

    def loader(
        self,
        split: str,
        shuffle: bool = False,
        batch_size: int | None = None,
        shard: tuple[int, int] | None = None,
    ) -> DataLoader:
        """A DataLoader over one split; ``shuffle`` draws from a generator seeded by the run.

        ``shard=(rank, world_size)``: this process's share of every batch (``ShardedBatches``).
        """
        x, y = self.splits[split]
        dataset = IndexedTensors(x, y)
        if shuffle:
            # One generator per loader; each epoch draws its order from it. A resumed fit restores
            # its state (kdrun.checkpointing.TrainingRandomness).
            self.shuffle_generator = torch.Generator().manual_seed(self.shuffle_seed)
            order = RandomSampler(dataset, generator=self.shuffle_generator)
        else:
            order = SequentialSampler(dataset)
        batches = BatchSampler(order, batch_size or self.batch_size, drop_last=False)
        return DataLoader(
            dataset,
            sampler=batches if shard is None else ShardedBatches(batches, *shard),
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        # Several processes (DDP) split each batch; validation runs whole in each (kdrun.fit).
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return self.loader("train", shuffle=True, shard=(trainer.global_rank, trainer.world_size))
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def on_after_batch_transfer(self, batch: tuple[torch.Tensor, ...], dataloader_idx: int) -> tuple:
        """Training batches get ``augment`` on their device (one random draw per sample)."""
        if self.augment is None or self.trainer is None or not self.trainer.training:
            return batch
        x, y, index = batch
        return self.augment(x), y, index


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
        x, y = x[: cfg.limit], y[: cfg.limit]
    train_x, val_x, test_x = (_shape(t, cfg.image_size, cfg.channels) for t in (x, val_x, test_x))
    mean, std = channel_stats(train_x)
    splits = [((t - mean) / std, labels) for t, labels in ((train_x, y), (val_x, val_y), (test_x, test_y))]
    data = TensorDataModule(
        *splits,
        classes=classes,
        batch_size=cfg.batch_size,
        fingerprint=_fingerprint(splits),
    )
    data.bad_files = source.bad_files
    data.normalization = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    data.build_threads = torch.get_num_threads()  # recorded; the tensors no longer depend on it
    augment = cfg.get("augment")
    if augment and (augment.crop_padding or augment.flip or augment.color_jitter):
        data.augment = Augment(mean.flatten().tolist(), std.flatten().tolist(), **augment)
    data.num_workers = cfg.get("num_workers") or 0
    pin = cfg.get("pin_memory")  # null: pinned when a GPU can take the batches
    data.pin_memory = torch.cuda.is_available() if pin is None else bool(pin)
    return data


def _stratified(x: torch.Tensor, y: torch.Tensor, size: int, seed: int, key: str) -> tuple:
    if not 0 < size < len(y):
        raise KdrunConfigError(key, size, f"must be between 1 and {len(y) - 1} (samples available)")
    try:
        parts = train_test_split(x, y, test_size=size, stratify=y.numpy(), random_state=seed)
    except ValueError as err:  # too few samples per class for a stratified split
        raise KdrunConfigError(key, size, str(err)) from None
    return tuple(torch.as_tensor(p) for p in parts)


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


def _fingerprint(splits: list[Split]) -> str:
    """A hash of the exact tensors each split holds: changes whenever the data or split does."""
    digest = hashlib.sha256()
    for x, y in splits:
        digest.update(x.numpy().tobytes())
        digest.update(y.numpy().tobytes())
    return digest.hexdigest()[:16]
