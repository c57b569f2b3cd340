"""dataset=imagefolder: a folder of PNGs written here loads, splits, augments and trains."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from kdrun.data import build_datamodule
from kdrun.data.augment import Augment
from kdrun.errors import KdrunConfigError
from kdrun.train.phases import cache_logits
from kdrun.train.validate import validate
from tests.conftest import make_cfg, run_kdrun

# One dominant colour channel per class: labels can be checked against pixels.
CLASSES = {"blue": 2, "green": 1, "red": 0}


def _write(folder, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name, channel in CLASSES.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, (20, 20, 3), dtype=np.uint8)
            pixels[..., channel] = rng.integers(160, 255, (20, 20), dtype=np.uint8)
            pixels[5:9, 2 + i % 10 : 6 + i % 10] = 255  # a white patch, so crops and flips show
            Image.fromarray(pixels).save(folder / name / f"{i:03d}.png")


@pytest.fixture
def flat_folder(tmp_path):
    """root/<class>/*.png, 20 images per class."""
    _write(tmp_path / "flat", 20, seed=0)
    return tmp_path / "flat"


@pytest.fixture
def split_folder(tmp_path):
    """root/train|val|test/<class>/*.png."""
    for split, count in (("train", 12), ("val", 3), ("test", 4)):
        _write(tmp_path / "split" / split, count, seed=len(split))
    return tmp_path / "split"


def _data(root, *overrides):
    cfg = make_cfg("dataset=imagefolder", f"dataset.root={root}", "dataset.image_size=16", *overrides)
    validate(cfg)
    return build_datamodule(cfg.dataset)


def _dominant_channel(data, split):
    """Per image, the one channel above the data set's mean (inputs are normalised per channel)."""
    return data.splits[split][0][:].mean(dim=(2, 3)).argmax(dim=1)


def test_class_folders_are_split_by_ratio_with_labels_from_folder_names(flat_folder):
    data = _data(flat_folder)
    assert data.classes == ["blue", "green", "red"]  # sorted folder names, like torchvision's ImageFolder
    sizes = {name: len(y) for name, (_, y) in data.splits.items()}
    assert sizes == {"train": 43, "val": 5, "test": 12}  # test 20% of 60, val 10% of the other 48
    assert data.input_shape == (3, 16, 16)
    expected = torch.tensor([CLASSES[name] for name in data.classes])
    for split in ("train", "val", "test"):
        assert torch.equal(_dominant_channel(data, split), expected[data.splits[split][1]]), split
    grey = _data(flat_folder, "dataset.channels=1", "dataset.split.test=6")
    assert grey.input_shape == (1, 16, 16) and len(grey.splits["test"][1]) == 6  # a count works too


def test_train_val_test_folders_are_used_as_given(split_folder):
    data = _data(split_folder)
    sizes = {name: len(y) for name, (_, y) in data.splits.items()}
    assert sizes == {"train": 36, "val": 9, "test": 12}
    expected = torch.tensor([CLASSES[name] for name in data.classes])
    assert torch.equal(_dominant_channel(data, "val"), expected[data.splits["val"][1]])


def test_bad_folders_name_dataset_root(tmp_path, split_folder):
    with pytest.raises(KdrunConfigError, match=r"^dataset.root=None: a folder with train/"):
        build_datamodule(make_cfg("dataset=imagefolder").dataset)
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "b").mkdir()
    with pytest.raises(KdrunConfigError, match=r"no images \(.png"):
        _data(tmp_path / "empty")
    (split_folder / "val" / "zebra").mkdir()
    with pytest.raises(KdrunConfigError, match=r"val/zebra'?: class folder not in the training classes"):
        _data(split_folder)
    (split_folder / "val" / "zebra").rmdir()
    (split_folder / "train" / "red" / "broken.png").write_text("not a png")
    with pytest.raises(KdrunConfigError, match=r"broken.png'?: not a readable image"):
        _data(split_folder)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("dataset.batch_augment.crop_padding=-1", "dataset.batch_augment.crop_padding"),
        ("dataset.batch_augment.color_jitter=1.5", "dataset.batch_augment.color_jitter"),
        ("dataset.batch_augment.flip=maybe", "dataset.batch_augment.flip"),
        ("dataset.num_workers=-2", "dataset.num_workers"),
    ],
)
def test_bad_augmentation_and_loader_settings_are_rejected(flat_folder, override, key):
    cfg = make_cfg("dataset=imagefolder", f"dataset.root={flat_folder}", override)
    with pytest.raises(KdrunConfigError, match=rf"^{key}="):
        validate(cfg)


def test_augmentation_differs_per_sample_keeps_labels_and_skips_evaluation(flat_folder):
    data = _data(flat_folder, "dataset.batch_augment.color_jitter=0.3")
    x = data.splits["train"][0][:1].repeat(32, 1, 1, 1)  # 32 copies of one image
    y, index = torch.zeros(32, dtype=torch.long), torch.arange(32)
    data.trainer = SimpleNamespace(training=True)
    torch.manual_seed(0)
    out_x, out_y, out_index = data.on_after_batch_transfer((x, y, index), 0)
    assert out_x.shape == x.shape and out_y is y and out_index is index
    assert len({tuple(sample.flatten().tolist()) for sample in out_x}) == 32  # each copy changed its own way
    data.trainer = SimpleNamespace(training=False)  # validation, test: the stored images
    assert data.on_after_batch_transfer((x, y, index), 0)[0] is x
    off = _data(flat_folder, "dataset.batch_augment.crop_padding=0", "dataset.batch_augment.flip=false")
    assert off.augment is None


def test_crop_and_flip_move_pixels_without_changing_them():
    image = torch.rand(1, 3, 8, 8)
    flip = Augment([0.0] * 3, [1.0] * 3, crop_padding=0, flip=True, color_jitter=0.0)
    torch.manual_seed(0)
    flipped = flip(image.repeat(16, 1, 1, 1))
    assert all(torch.equal(s, image[0]) or torch.equal(s, image[0].flip(-1)) for s in flipped)
    assert any(torch.equal(s, image[0]) for s in flipped) and any(
        not torch.equal(s, image[0]) for s in flipped
    )
    crop = Augment([0.0] * 3, [1.0] * 3, crop_padding=2, flip=False, color_jitter=0.0)
    padded = torch.nn.functional.pad(image[0], (2, 2, 2, 2))
    for sample in crop(image.repeat(8, 1, 1, 1)):
        windows = [padded[:, r : r + 8, c : c + 8] for r in range(5) for c in range(5)]
        assert any(torch.allclose(sample, w) for w in windows)


def test_cached_teacher_logits_only_without_augmentation(flat_folder):
    cfg = make_cfg("dataset=imagefolder", f"dataset.root={flat_folder}")
    assert not cache_logits(cfg, _data(flat_folder))
    assert cache_logits(
        cfg, _data(flat_folder, "dataset.batch_augment.crop_padding=0", "dataset.batch_augment.flip=false")
    )


def test_smoke_training_run_on_an_image_folder(flat_folder, tmp_path):
    run = run_kdrun(
        [
            "train",
            "debug=smoke",
            "dataset=imagefolder",
            f"dataset.root={flat_folder}",
            "dataset.storage=stream",  # files read per sample by 2 workers, batches augmented on device
            "dataset.num_workers=2",
            "hydra.run.dir=outputs/run",
        ],
        tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "kd.cache_logits: not used, dataset.augment changes the training inputs" in run.stdout
    results = json.loads((tmp_path / "outputs/run/results.json").read_text())
    assert results["status"] == "ok"
    assert results["data"]["name"] == "imagefolder" and results["data"]["input_shape"] == [3, 32, 32]
    assert results["data"]["storage"] == "stream" and results["data"]["bad_files"]["count"] == 0
    assert (results["data"]["train"], results["data"]["val"], results["data"]["test"]) == (43, 5, 12)
    assert results["data"]["normalization"]["from"] == "measured"  # and kept for the next run:
    assert len(list((tmp_path / "outputs/cache/stats").glob("normalization-*/stats.json"))) == 1
    spec = json.loads(next((tmp_path / "outputs/cache/teacher").glob("*/spec.json")).read_text())
    assert spec["augment"] == {"crop_padding": 4, "flip": True, "color_jitter": 0.0}  # part of the cache key


def _modes_folder(root):
    """One 8x8 image per PIL mode, in two classes; every image's grey level is known."""
    ramp = np.linspace(0, 1, 64).reshape(8, 8)
    grey8 = (ramp * 255).round().astype(np.uint8)
    rgb = np.stack([grey8] * 3, axis=-1)
    images = {
        "a/grey16.png": Image.fromarray((ramp * 65535).round().astype(np.uint16)),  # mode I;16
        "a/grey32.tif": Image.fromarray((ramp * 65535).round().astype(np.int32)),  # mode I
        "a/float.tif": Image.fromarray(ramp.astype(np.float32)),  # mode F
        "a/grey.png": Image.fromarray(grey8),
        "a/rgba.png": Image.fromarray(np.dstack([rgb, np.full((8, 8), 7, np.uint8)])),
        "b/palette.png": Image.fromarray(rgb).quantize(64),
        "b/cmyk.jpg": Image.fromarray(rgb).convert("CMYK"),
        "b/rgb.jpg": Image.fromarray(rgb),
        "b/grey_alpha.png": Image.fromarray(grey8).convert("LA"),
    }
    for name, image in images.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name, quality=100) if name.endswith(".jpg") else image.save(root / name)
    transparent = Image.fromarray(rgb).quantize(64)
    transparent.info["transparency"] = 0
    transparent.save(root / "b/palette_transparent.png", transparency=0)
    return grey8


@pytest.mark.parametrize("channels", [1, 3])
def test_every_pil_mode_becomes_the_configured_channels_with_its_grey_levels(tmp_path, channels):
    from kdrun.data.imagefolder import Walker, decode

    grey8 = _modes_folder(tmp_path)
    walker = Walker(tmp_path)
    for path in walker.images(tmp_path / "a") + walker.images(tmp_path / "b"):
        pixels = np.asarray(decode(path, channels)).astype(int)
        assert pixels.shape == ((8, 8) if channels == 1 else (8, 8, 3)), path.name
        # 16-bit grey is scaled into 0..255, not clipped (which made every pixel 255); JPEG and
        # the 64-colour palette are lossy, the rest exact.
        tolerance = 6 if path.suffix == ".jpg" or "palette" in path.name else 0
        levels = pixels if channels == 1 else pixels.mean(axis=-1)
        assert np.abs(levels - grey8).max() <= tolerance, (path.name, levels.max())


def _bad_folder(root):
    _write(root, 4, seed=0)
    (root / "red" / "zero.png").write_bytes(b"")
    (root / "red" / "notes.png").write_text("not an image at all")
    good = root / "red" / "000.png"
    (root / "green" / "truncated.png").write_bytes(good.read_bytes()[:200])
    os.mkfifo(root / "blue" / "pipe.png")  # opening it would block for ever
    # In the order they are found: the scan (stat) by class, then decoding by class.
    return {
        "pipe.png": "not a regular file",
        "zero.png": "empty file",
        "truncated.png": "not a readable image",
        "notes.png": "not a readable image",
    }


def test_each_bad_file_stops_the_build_naming_it_or_is_skipped_and_listed(tmp_path):
    expected = _bad_folder(tmp_path / "bad")
    for name, reason in expected.items():  # error (the default): one message per bad file, named
        found = [p for p in (tmp_path / "bad").rglob(name)]
        with pytest.raises(KdrunConfigError, match=rf"{name}'?: .*{reason}.*on_bad_file=skip"):
            _data(tmp_path / "bad", "dataset.split.val=3", "dataset.split.test=3")
        found[0].unlink()  # fixed: the next bad file is the next error
    _bad_folder(tmp_path / "again")
    data = _data(
        tmp_path / "again", "dataset.on_bad_file=skip", "dataset.split.val=3", "dataset.split.test=3"
    )
    listed = {Path(b["path"]).name: b["reason"] for b in data.summary()["bad_files"]["files"]}
    assert set(listed) == set(expected) and data.summary()["bad_files"]["count"] == 4
    assert all(reason in listed[name] for name, reason in expected.items())
    assert sum(len(y) for _, y in data.splits.values()) == 12  # the 12 good images


def test_decompression_bombs_are_refused_before_decoding(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    from kdrun.data.imagefolder import BadImage, decode

    PILImage.new("L", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 3000)  # PIL itself would only warn
    with pytest.raises(BadImage, match=r"big.png: refused as a decompression bomb \(64x64 > 3000 pixels\)"):
        decode(tmp_path / "big.png", 1)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # PIL refuses to open it
    with pytest.raises(BadImage, match=r"big.png: refused as a decompression bomb"):
        decode(tmp_path / "big.png", 1)


def test_hidden_files_and_folders_are_ignored_in_every_split(split_folder):
    for split in ("train", "val", "test"):
        (split_folder / split / ".ipynb_checkpoints").mkdir()  # not a class, not an error
        (split_folder / split / "red" / ".ipynb_checkpoints").mkdir()
        (split_folder / split / "red" / ".ipynb_checkpoints" / "x.png").write_text("junk")
        (split_folder / split / "red" / "._000.png").write_text("AppleDouble junk")
        (split_folder / split / "red" / ".DS_Store").write_text("junk")
    (split_folder / "train" / "red" / "more").mkdir()  # sub-folders of a class are read, as torchvision does
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(split_folder / "train" / "red" / "more" / "x.png")
    data = _data(split_folder)
    assert data.classes == ["blue", "green", "red"]
    assert {name: len(y) for name, (_, y) in data.splits.items()} == {"train": 37, "val": 9, "test": 12}


def test_bad_on_bad_file_value_names_the_key(flat_folder):
    cfg = make_cfg("dataset=imagefolder", f"dataset.root={flat_folder}", "dataset.on_bad_file=ignore")
    with pytest.raises(KdrunConfigError, match=r"^dataset.on_bad_file='ignore': allowed: error, skip"):
        validate(cfg)


def _batches(data, split="train", **kwargs):
    return list(data.loader(split, **kwargs))


def test_streamed_files_give_the_same_batches_as_memory(split_folder):
    memory = _data(split_folder, "dataset.storage=memory", "dataset.augment=none")
    stream = _data(split_folder, "dataset.storage=stream", "dataset.augment=none", "dataset.num_workers=1")
    assert not memory.streams and stream.streams and stream.summary()["storage"] == "stream"
    assert stream.normalization == memory.normalization  # all 36 training images sampled: same statistics
    assert stream.input_shape == memory.input_shape == (3, 16, 16)
    assert torch.equal(stream.splits["test"][0][:2], memory.splits["test"][0][:2])  # the probes' view
    for split, shuffle in (("train", True), ("val", False), ("test", False)):
        pairs = zip(
            _batches(memory, split, shuffle=shuffle), _batches(stream, split, shuffle=shuffle), strict=True
        )
        for (mx, my, mi), (sx, sy, si) in pairs:
            assert torch.equal(mx, sx) and torch.equal(my, sy) and torch.equal(mi, si), split
    head = stream.head(5)
    assert head.streams and len(head.splits["train"][1]) == 5 and head.fingerprint != stream.fingerprint


def test_stream_fingerprint_follows_file_sizes_and_times_not_contents(split_folder):
    first = _data(split_folder, "dataset.storage=stream").fingerprint
    assert _data(split_folder, "dataset.storage=stream").fingerprint == first
    path = split_folder / "train" / "red" / "000.png"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert _data(split_folder, "dataset.storage=stream").fingerprint != first


def test_measured_stream_statistics_are_kept_in_the_cache_and_follow_the_files(split_folder, tmp_path):
    from kdrun.cache import Cache
    from kdrun.cache.stats import cached_stats

    cfg = make_cfg("dataset=imagefolder", f"dataset.root={split_folder}", "dataset.storage=stream").dataset
    measured = []
    store = cached_stats(Cache(tmp_path / "cache"))

    def counting(spec, measure):
        return store(spec, lambda: measured.append(1) or measure())

    first = build_datamodule(cfg, counting)
    again = build_datamodule(cfg, counting)
    assert (first.stats_from, again.stats_from, len(measured)) == ("measured", "cache", 1)
    assert again.normalization == first.normalization and again.fingerprint == first.fingerprint
    assert again.summary()["normalization"]["from"] == "cache"
    path = split_folder / "train" / "red" / "000.png"
    Image.fromarray(np.full((24, 24, 3), 255, np.uint8)).save(path)  # a changed training image
    changed = build_datamodule(cfg, counting)
    assert (changed.stats_from, len(measured)) == ("measured", 2)
    assert changed.normalization != first.normalization
    assert len(list((tmp_path / "cache" / "stats").iterdir())) == 2 + 2  # two entries and their locks


def test_auto_storage_streams_over_the_memory_budget(flat_folder):
    assert not _data(flat_folder, "dataset.storage=auto").streams  # 60 x 3 x 16 x 16 bytes fit 4 GiB
    # 46,080 bytes held as uint8 fit 0.0001 GiB (107,374 bytes; as float32 they would not); 0.00004 do not
    assert not _data(flat_folder, "dataset.storage=auto", "dataset.memory_budget_gb=0.0001").streams
    assert _data(flat_folder, "dataset.storage=auto", "dataset.memory_budget_gb=0.00004").streams


def test_eval_resize_takes_the_centre_crop(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i in range(10):
            pixels = np.zeros((20, 40, 3), np.uint8)
            pixels[:, 6:34] = 255  # a white centre between black sides: 20x40
            Image.fromarray(pixels).save(tmp_path / name / f"{i}.png")
    for storage in ("memory", "stream"):
        data = _data(
            tmp_path,
            f"dataset.storage={storage}",
            "dataset.eval_resize=16",
            "dataset.split.test=4",
            "dataset.split.val=2",
            "dataset.mean=[0,0,0]",
            "dataset.std=[1,1,1]",
        )
        x = data.splits["test"][0][:1]
        assert x.shape == (1, 3, 16, 16) and x.min() == 1.0, storage  # only the white centre is left


def test_named_and_yaml_pipelines_change_training_samples_only(split_folder, tmp_path):
    entries = (
        "dataset.augment=[{_target_: torchvision.transforms.v2.RandomHorizontalFlip, p: 1.0},"
        "{_target_: torchvision.transforms.v2.RandomApply, transforms: "
        "[{_target_: torchvision.transforms.v2.ColorJitter, brightness: 0.5}], p: 0.0}]"
    )
    for storage in ("memory", "stream"):
        plain = _data(split_folder, f"dataset.storage={storage}", "dataset.augment=none")
        flipped = _data(split_folder, f"dataset.storage={storage}", entries)
        x, *_ = _batches(plain, shuffle=False)[0]
        fx, *_ = _batches(flipped, shuffle=False, augment=True)[0]
        assert torch.allclose(fx, x.flip(-1), atol=1e-5), storage  # p=1 flip, p=0 jitter
        assert torch.equal(_batches(flipped, shuffle=False)[0][0], x)  # without augment=True: unchanged
        assert flipped.augment.settings["pipeline"][0]["p"] == 1.0  # part of the cache keys
    torch.manual_seed(0)
    cifar = _data(split_folder, "dataset.storage=stream", "dataset.augment=trivialaugment")
    x, *_ = _batches(cifar, shuffle=False, augment=True)[0]
    assert x.shape == (36, 3, 16, 16)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "dataset.augment=cifar10",
            r"^dataset.augment='cifar10': allowed: batch, cifar, imagenet.*\(closest: cifar\)",
        ),
        (
            "dataset.augment=[{_target_: os.system, command: ls}]",
            r"_target_='os.system': (only transforms of|not allowed)",
        ),
        (
            "dataset.augment=[{_target_: torchvision.transforms.RandomHorizontalFlip}]",  # v1: not v2
            r"only transforms of torchvision.transforms.v2.\* .*closest: .*v2.RandomHorizontalFlip",
        ),
        ("dataset.augment=[{_target_: torchvision.transforms.v2.RandomCrop, sise: 3}]", r"bad arguments"),
        ("dataset.storage=disk", r"^dataset.storage='disk': allowed: auto, memory, stream"),
        ("dataset.eval_resize=8", r"^dataset.eval_resize=8: must be >= dataset.image_size"),
        ("dataset.mean=[0.5]", r"^dataset.mean=.*a list of 3 numbers"),
        ("dataset.prefetch_factor=0", r"^dataset.prefetch_factor=0: must be an integer >= 1"),
    ],
)
def test_bad_storage_and_pipeline_settings_name_the_key(flat_folder, override, message):
    cfg = make_cfg("dataset=imagefolder", f"dataset.root={flat_folder}", "dataset.image_size=16", override)
    with pytest.raises(KdrunConfigError, match=message):
        validate(cfg)


def test_a_file_broken_after_the_scan_fails_naming_it_or_is_skipped(split_folder):
    for skip in (False, True):
        on_bad, workers = ("skip", 0) if skip else ("error", 1)  # a worker's warnings go to its stderr
        data = _data(
            split_folder,
            "dataset.storage=stream",
            f"dataset.on_bad_file={on_bad}",
            f"dataset.num_workers={workers}",
        )
        broken = data.splits["val"][0].files[0]
        original = broken.read_bytes()
        broken.write_bytes(original[:100])  # truncated while the run reads
        try:
            if skip:
                with pytest.warns(UserWarning, match="skipped a bad image while reading"):
                    assert len(_batches(data, "val")[0][0]) == 9
            else:
                with pytest.raises(RuntimeError, match=rf"{broken.name}: not a readable image"):
                    _batches(data, "val")
        finally:
            broken.write_bytes(original)
