"""The LightningDataModule: fixed splits, their loaders (whole-batch indexing or per-sample), DDP shares.

``kdrun.data.build`` makes one from the config.
"""

import hashlib
from collections.abc import Iterator

import lightning as L
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    DistributedSampler,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from kdrun.data.augment import Augment
from kdrun.data.memory import ByteImages
from kdrun.data.replay import StoredViews, ViewSampler
from kdrun.data.stream import FileImages, Samples, Streamed
from kdrun.data.transforms import Mix, SampleAugment

Split = tuple[torch.Tensor, torch.Tensor]


class IndexedTensors(Dataset):
    """``(x, y, index)`` rows of images and labels in memory, fetched a whole batch per call.

    The loader hands over a batch's index list; one conversion to a tensor, then tensor indexing
    (``TensorDataset`` would index each tensor with the Python list: ~0.3 ms a batch). Images
    stored as bytes are normalised here, a batch at a time.
    """

    def __init__(self, x: torch.Tensor | ByteImages, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: list[int] | int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        return self.x[idx], self.y[idx], idx


class TensorBatches:
    """The batches of ``sampler`` (index lists) read from tensors in memory, in the calling process.

    What a ``DataLoader`` without workers does here (the same batches, drawn from the same
    generator), minus its per-batch bookkeeping, which costs a tenth of a small model's step.
    ``pin_memory``: each batch is pinned, for an overlapped copy to the GPU.
    """

    batch_sampler = None  # as a DataLoader that is handed whole batches (Lightning reads both)

    def __init__(self, dataset: IndexedTensors, sampler: Sampler[list[int]], pin_memory: bool) -> None:
        self.dataset, self.sampler, self.pin_memory = dataset, sampler, pin_memory

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        # A DataLoader iterator's seed draw (not on Lightning's probe): the global RNG stays in step.
        torch.empty((), dtype=torch.int64).random_()
        for index in self.sampler:  # a generator: the sampler draws the order at the first batch
            batch = self.dataset[index]
            yield tuple(t.pin_memory() for t in batch) if self.pin_memory else batch


class TensorDataModule(L.LightningDataModule):
    """Train/val/test images and labels; batches are ``(x, y, sample_index)``.

    A split's images are a normalised float32 tensor, ``ByteImages`` (8-bit, normalised per batch)
    or streamed (``FileImages``, ``ArrayImages``: read per sample); a slice of any of them is
    normalised float32 images.

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
        self.name = ""  # the data set (dataset.name): a readable word in its cache entries' names
        self.fingerprint_of = "tensors"  # what it hashes: the inputs, or (streamed) files: stat, content
        self.normalization: dict[str, list[float]] | None = None  # per-channel mean/std applied to inputs
        self.stats_from = "config"  # where the normalisation came from: config, measured, cache
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
        return isinstance(self.splits["train"][0], Streamed)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.splits["train"][0].shape[1:])

    def summary(self) -> dict[str, object]:
        """What results.json records about how the data was read (beyond its splits' sizes)."""
        return {
            "storage": "stream" if self.streams else "memory",
            "fingerprint_of": self.fingerprint_of,
            "normalization": {**(self.normalization or {}), "from": self.stats_from},
            "bad_files": self._bad_files(),
        }

    def _bad_files(self) -> dict[str, object]:
        """Files left out (``dataset.on_bad_file=skip``): found at the scan, and found while reading."""
        found = [f for x, _ in self.splits.values() if isinstance(x, FileImages) for f in x.skipped()]
        files = self.bad_files + found
        return {"count": len(files), "while_reading": len(found), "files": files}

    def head(self, n: int) -> "TensorDataModule":
        """The same data with only the first ``n`` training samples (val and test unchanged)."""
        x, y = self.splits["train"]
        digest = hashlib.sha256(f"{self.fingerprint}:head{n}".encode()).hexdigest()[:16]
        first = x.take(range(min(n, len(x)))) if isinstance(x, Streamed | ByteImages) else x[:n]
        if isinstance(first, FileImages):  # files found bad while reading count in this set's summary
            first.unreadable = x.unreadable[: len(first)]
        head = TensorDataModule(
            (first, y[:n]), self.splits["val"], self.splits["test"], self.classes, self.batch_size, digest
        )
        head.augment, head.num_workers, head.pin_memory = self.augment, self.num_workers, self.pin_memory
        head.persistent_workers, head.prefetch_factor = self.persistent_workers, self.prefetch_factor
        head.normalization, head.mix, head.name = self.normalization, self.mix, self.name
        return head

    def loader(
        self,
        split: str,
        shuffle: bool = False,
        batch_size: int | None = None,
        shard: tuple[int, int] | None = None,
        augment: bool = False,
    ) -> DataLoader | TensorBatches:
        """A loader over one split; ``shuffle`` draws from a generator seeded by the run.

        ``shard=(rank, world_size)``: this process's part (see ``_batches``).
        ``augment``: apply a per-sample pipeline (``SampleAugment``) — the training loader only;
        with ``views`` set, show each image as one of its stored views instead (``ViewSampler``).
        Tensors in memory are fetched a batch per call (``TensorBatches``, or a DataLoader with
        ``num_workers``); files, or samples to transform, one by one in worker processes, in the
        same batches and order.
        """
        x, y = self.splits[split]
        sample_augment = (
            self.augment.transforms if augment and isinstance(self.augment, SampleAugment) else None
        )
        views = self.views if augment else None
        streamed = isinstance(x, Streamed)
        per_sample = streamed or sample_augment is not None or views is not None
        if per_sample:
            mean, std = (torch.tensor(self.normalization[k]).view(1, -1, 1, 1) for k in ("mean", "std"))
            dataset = views.samples(x, y, mean, std) if views else Samples(x, y, mean, std, sample_augment)
        else:
            dataset = IndexedTensors(x, y)
        batches = self._batches(
            dataset, len(y), batch_size or self.batch_size, shuffle, shard, views, streamed
        )
        if not per_sample and not self.num_workers:
            return TensorBatches(dataset, batches, self.pin_memory)
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

    def _batches(
        self,
        dataset: Dataset,
        samples: int,
        size: int,
        shuffle: bool,
        shard: tuple[int, int] | None,
        views: object,
        streamed: bool,
    ) -> Sampler[list[int]]:
        """The batches of indices a loader reads, in order; ``shard``: this process's part of them.

        In memory, each process takes its share of every batch (``ShardedBatches``). Streamed
        files take Lightning's DDP path: a ``DistributedSampler`` (Lightning sets its epoch) gives
        each process its own samples, ``size / world_size`` a step, so the global batch is ``size``.
        """
        if shuffle:
            # One generator per loader; each epoch draws its order from it. A resumed fit restores
            # its state (kdrun.training.checkpointing.TrainingRandomness).
            self.shuffle_generator = torch.Generator().manual_seed(self.shuffle_seed)
        if shard is not None and views is None and streamed:
            rank, world = shard
            order = DistributedSampler(dataset, world, rank, shuffle=shuffle, seed=self.shuffle_seed)
            return BatchSampler(order, max(1, size // world), drop_last=False)
        if not shuffle:
            order = SequentialSampler(dataset)
        elif views:
            order = ViewSampler(samples, views.count, self.shuffle_generator)
        else:
            order = RandomSampler(dataset, generator=self.shuffle_generator)
        batches = BatchSampler(order, size, drop_last=False)
        return batches if shard is None else ShardedBatches(batches, *shard)

    def train_dataloader(self) -> DataLoader | TensorBatches:
        # Several processes (DDP) split each batch; validation runs whole in each (kdrun.training.fit).
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:
            return self.loader(
                "train", shuffle=True, shard=(trainer.global_rank, trainer.world_size), augment=True
            )
        return self.loader("train", shuffle=True, augment=True)

    def val_dataloader(self) -> DataLoader | TensorBatches:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader | TensorBatches:
        return self.loader("test")

    def transfer_batch_to_device(self, batch: object, device: torch.device, dataloader_idx: int) -> object:
        """Our batches, a tuple (or a collated list) of tensors, moved without Lightning's walk
        through arbitrary collections; an upload to a GPU does not wait for the copy."""
        if isinstance(batch, tuple | list) and all(isinstance(t, torch.Tensor) for t in batch):
            return type(batch)(t.to(device, non_blocking=device.type == "cuda") for t in batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

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
