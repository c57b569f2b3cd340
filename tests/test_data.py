"""Data sets by name: fixed stratified splits, shapes as declared, torchvision files read offline."""

import struct

import numpy as np
import pytest
import torch

from kdrun.data import build_datamodule
from kdrun.errors import KdrunConfigError
from tests.conftest import make_cfg


def test_default_embedded_set_has_fixed_stratified_splits():
    data = build_datamodule(make_cfg().dataset)
    sizes = {name: len(y) for name, (_, y) in data.splits.items()}
    assert sizes == {"train": 3500, "val": 500, "test": 1000}
    assert data.input_shape == (1, 28, 28) and data.num_classes == 10
    test_counts = torch.bincount(data.splits["test"][1], minlength=10)
    assert test_counts.tolist() == [100] * 10  # stratified: 10% of each class


def test_split_and_fingerprint_do_not_depend_on_the_run_seed():
    a = build_datamodule(make_cfg("seed=0").dataset)
    b = build_datamodule(make_cfg("seed=7").dataset)
    assert a.fingerprint == b.fingerprint
    assert torch.equal(a.splits["test"][0][:], b.splits["test"][0][:])
    c = build_datamodule(make_cfg("dataset.split.seed=1").dataset)
    assert c.fingerprint != a.fingerprint


def test_image_size_and_channels_follow_the_config():
    data = build_datamodule(make_cfg("dataset=digits", "dataset.image_size=16", "dataset.channels=3").dataset)
    assert data.input_shape == (3, 16, 16)
    assert data.batch_size == 64


def test_limit_keeps_only_the_first_training_samples():
    data = build_datamodule(make_cfg("dataset.limit=100").dataset)
    assert len(data.splits["train"][1]) == 100 and len(data.splits["test"][1]) == 1000


def test_train_batches_are_whole_tensor_slices_in_a_seeded_order(tiny_data):
    first = [b[2] for b in tiny_data.train_dataloader()]
    again = [b[2] for b in tiny_data.train_dataloader()]
    assert [len(i) for i in first] == [8] * 5
    assert torch.equal(torch.cat(first).sort().values, torch.arange(40))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(torch.cat(first), torch.arange(40))


def _idx(path, array: np.ndarray) -> None:
    header = struct.pack(">I", 0x0800 | array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fake_mnist(root, n_train=60, n_test=20) -> None:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        _idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)


def test_torchvision_mnist_reads_files_from_root(tmp_path):
    _fake_mnist(tmp_path)
    cfg = make_cfg("dataset=mnist", f"dataset.root={tmp_path}", "dataset.split.val=20")
    data = build_datamodule(cfg.dataset)
    sizes = {name: len(y) for name, (_, y) in data.splits.items()}
    assert sizes == {"train": 40, "val": 20, "test": 20}
    assert data.input_shape == (1, 28, 28)


def test_missing_torchvision_set_without_download_is_a_clear_error(tmp_path):
    cfg = make_cfg("dataset=cifar10", f"dataset.root={tmp_path}")
    with pytest.raises(KdrunConfigError, match=r"^dataset\.root=.*download=true"):
        build_datamodule(cfg.dataset)


def test_split_larger_than_the_data_is_a_clear_error():
    with pytest.raises(KdrunConfigError, match=r"^dataset\.split\.val=9999"):
        build_datamodule(make_cfg("dataset=digits", "dataset.split.val=9999").dataset)


def test_normalisation_and_fingerprint_do_not_depend_on_the_thread_count(monkeypatch):
    """torch's float32 mean over (N, H, W) rounds differently with 1, 2 or 3 threads for this shape."""
    from kdrun.data.sources import DATASETS, Source

    images = torch.rand(4000, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    labels = torch.arange(4000) % 10
    monkeypatch.setitem(DATASETS, "mnist_subset", lambda cfg: Source((images, labels), list("0123456789")))
    cfg = make_cfg()
    before, built = torch.get_num_threads(), []
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            data = build_datamodule(cfg.dataset)
            built.append((data.fingerprint, data.normalization))
    finally:
        torch.set_num_threads(before)
    assert built[0] == built[1] == built[2]
    assert data.normalization["mean"][0] == pytest.approx(0.5, abs=1e-3)  # uniform pixels
    assert data.normalization["std"][0] == pytest.approx(12**-0.5, abs=1e-3)


@pytest.mark.parametrize("channels", [1, 3])
def test_8bit_images_are_held_as_bytes_and_give_the_float32_inputs_bitwise(monkeypatch, channels):
    """Stored as uint8 (4x less memory, grey shown as RGB without a copy), normalised per batch."""
    from kdrun.data.memory import ByteImages
    from kdrun.data.sources import DATASETS, Source

    pixels = torch.randint(
        0, 256, (300, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    labels = torch.arange(300) % 10
    built = {}
    for kind, images in (
        ("bytes", pixels),
        ("float32", torch.as_tensor(pixels, dtype=torch.float32) / 255.0),
    ):
        monkeypatch.setitem(
            DATASETS, "mnist_subset", lambda cfg, x=images: Source((x, labels), list("0123456789"))
        )
        cfg = make_cfg("dataset.split.val=30", "dataset.split.test=60", f"dataset.channels={channels}")
        built[kind] = build_datamodule(cfg.dataset)
    stored, floats = built["bytes"], built["float32"]
    assert isinstance(stored.splits["train"][0], ByteImages) and isinstance(
        floats.splits["train"][0], torch.Tensor
    )
    assert stored.splits["train"][0].nbytes * 4 * channels == floats.splits["train"][0].numel() * 4
    assert stored.fingerprint == floats.fingerprint and stored.normalization == floats.normalization
    assert stored.input_shape == floats.input_shape == (channels, 28, 28)
    for split in ("train", "val", "test"):
        assert torch.equal(stored.splits[split][0][:], floats.splits[split][0])
        batches = zip(stored.loader(split, batch_size=64), floats.loader(split, batch_size=64), strict=True)
        assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in batches)
    assert torch.equal(stored.head(7).splits["train"][0][:], floats.splits["train"][0][:7])


SETS = ["mnist_subset", "digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagefolder"]


@pytest.mark.parametrize("name", SETS)
def test_every_data_set_takes_the_batch_augmentation_and_mixing_by_its_own_keys(name):
    from kdrun.data.settings import check_dataset

    cfg = make_cfg(f"dataset={name}", "dataset.augment=batch", "dataset.mix=mixup")
    check_dataset(cfg.dataset)  # no `+`/`++` needed, nothing raised
    assert set(cfg.dataset.batch_augment) == {"crop_padding", "flip", "color_jitter"}
    if name in ("mnist_subset", "digits", "mnist"):
        assert cfg.dataset.batch_augment.flip is False  # a mirrored digit is another glyph


def test_the_default_set_shifts_digits_without_mirroring_them():
    data = build_datamodule(make_cfg("dataset.augment=batch").dataset)
    assert data.augment.settings == {"crop_padding": 2, "flip": False, "color_jitter": 0.0}
    x = data.splits["train"][0][:16]  # normalised float inputs, as the training batches reach the device
    torch.manual_seed(0)
    shifted = data.augment(x)
    black = (0 - data.augment.mean) / data.augment.std  # the padding, normalised
    padded = torch.nn.functional.pad(x - black, (2, 2, 2, 2)) + black
    views = [padded[..., 2 + dy : 30 + dy, 2 + dx : 30 + dx] for dy in range(-2, 3) for dx in range(-2, 3)]
    for i in range(len(x)):  # each sample is its digit moved by at most 2 px, never mirrored
        assert any(torch.allclose(shifted[i], v[i], atol=1e-5) for v in views), i
    assert not torch.equal(shifted, x)


def test_batch_augmentation_without_its_settings_is_one_line():
    from omegaconf import OmegaConf

    from kdrun.data.settings import check_dataset

    dataset = make_cfg().dataset
    OmegaConf.set_struct(dataset, False)
    dataset.augment = "batch"
    del dataset["batch_augment"]
    with pytest.raises(KdrunConfigError, match=r"dataset\.batch_augment.*crop_padding"):
        check_dataset(dataset)
