"""dataset.storage=stream for the torchvision sets, on files written here in their on-disk formats."""

import pickle

import numpy as np
import pytest
import torch

from kdrun.data import build_datamodule
from kdrun.data.arrays import ArrayImages
from kdrun.errors import KdrunConfigError
from tests.conftest import make_cfg
from tests.test_data import _fake_mnist


def _fake_cifar10(root, n_batch=20, protocol=2) -> None:
    """CIFAR-10's python layout: five training batches, a test batch and the meta file, pickled."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        entry = {
            "batch_label": name,
            "labels": [int(v) for v in np.arange(n_batch) % 10],
            "data": rng.integers(0, 256, (n_batch, 3072), dtype=np.uint8),
            "filenames": [f"{name}_{i}.png" for i in range(n_batch)],
        }
        (folder / name).write_bytes(pickle.dumps(entry, protocol=protocol))
    meta = {"label_names": [f"class{i}" for i in range(10)], "num_cases_per_batch": n_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))


def _both(name, root, *overrides):
    built = {}
    for storage in ("memory", "stream"):
        cfg = make_cfg(f"dataset={name}", f"dataset.root={root}", f"dataset.storage={storage}", *overrides)
        built[storage] = build_datamodule(cfg.dataset)
    return built["memory"], built["stream"]


@pytest.mark.parametrize("channels", [1, 3])
def test_streamed_mnist_gives_the_in_memory_inputs(tmp_path, channels):
    _fake_mnist(tmp_path)
    memory, stream = _both("mnist", tmp_path, "dataset.split.val=20", f"dataset.channels={channels}")
    assert stream.streams and not memory.streams
    assert isinstance(stream.splits["train"][0], ArrayImages)
    assert np.asarray(stream.splits["train"][0].array).base is not None  # mapped from the file, not copied
    assert stream.normalization == memory.normalization  # measured on the whole training split
    assert stream.fingerprint != memory.fingerprint
    for split in ("train", "val", "test"):
        assert torch.equal(stream.splits[split][0][:], memory.splits[split][0][:]), split
        batches = zip(stream.loader(split, batch_size=16), memory.loader(split, batch_size=16), strict=True)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in batches), split


def test_streamed_samples_are_served_by_worker_processes(tmp_path):
    _fake_mnist(tmp_path)
    memory, stream = _both("mnist", tmp_path, "dataset.split.val=20", "dataset.num_workers=2")
    assert stream.num_workers == 2 and memory.num_workers == 2
    loader = stream.loader("test", batch_size=8)
    assert loader.num_workers == 2 and loader.persistent_workers
    assert torch.equal(torch.cat([x for x, _, _ in loader]), memory.splits["test"][0][:])
    images = stream.splits["train"][0]
    again = pickle.loads(pickle.dumps(images))  # what a spawned process receives: the file, not its pixels
    assert len(pickle.dumps(images)) < images.array.nbytes // 4
    assert torch.equal(again[0:5], images[0:5])


def test_streamed_cifar_reads_the_pickled_batches_and_class_names(tmp_path):
    _fake_cifar10(tmp_path)
    memory, stream = _both("cifar10", tmp_path, "dataset.split.val=10")
    assert stream.classes == memory.classes == [f"class{i}" for i in range(10)]
    assert {k: len(y) for k, (_, y) in stream.splits.items()} == {"train": 90, "val": 10, "test": 20}
    assert stream.input_shape == (3, 32, 32)
    assert torch.equal(stream.splits["val"][0][:], memory.splits["val"][0][:])
    x, y, _ = next(iter(stream.loader("train", batch_size=90)))
    assert torch.equal(x, memory.splits["train"][0][:]) and torch.equal(y, memory.splits["train"][1])


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch ran",))


def test_a_cifar_pickle_that_names_code_is_refused_without_running_it(tmp_path, monkeypatch):
    _fake_cifar10(tmp_path)
    hostile = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    hostile.write_bytes(pickle.dumps({"data": _RunsCode(), "labels": []}, protocol=2))
    monkeypatch.chdir(tmp_path)
    for storage in ("memory", "stream"):
        cfg = make_cfg("dataset=cifar10", f"dataset.root={tmp_path}", f"dataset.storage={storage}")
        with pytest.raises(
            KdrunConfigError, match=r"^dataset\.root=.*data_batch_3.*refused to load posix\.system"
        ):
            build_datamodule(cfg.dataset)
    assert not (tmp_path / "ran").exists()


def test_a_truncated_idx_file_is_named(tmp_path):
    _fake_mnist(tmp_path)
    images = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-5])
    cfg = make_cfg("dataset=mnist", f"dataset.root={tmp_path}", "dataset.storage=stream")
    with pytest.raises(
        KdrunConfigError, match=r"train-images-idx3-ubyte.*bytes, but its header says \(60, 28, 28\)"
    ):
        build_datamodule(cfg.dataset)


def test_stream_is_refused_for_the_embedded_sets():
    from kdrun.train.validate import validate

    with pytest.raises(KdrunConfigError, match=r"^dataset\.storage='stream': only for imagefolder, mnist"):
        validate(make_cfg("dataset=digits", "+dataset.storage=stream"))
