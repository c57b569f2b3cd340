"""Hostile data folders: directory links back into the tree, files reached twice, stale streamed data."""

import os
from pathlib import Path

import numpy as np
from PIL import Image

from kdrun.data.imagefolder import imagefolder
from tests.conftest import make_cfg

CLASSES = ("blue", "green", "red")


def _images(folder: Path, count: int, value: int = 0, suffix: str = ".png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((4, 4), value + i, dtype=np.uint8)).save(folder / f"{i:03d}{suffix}")


def _source(root: Path):
    cfg = make_cfg(
        "dataset=imagefolder", f"dataset.root={root}", "dataset.image_size=4", "dataset.channels=1"
    )
    return imagefolder(cfg.dataset)


def test_a_directory_link_back_into_the_tree_is_not_walked_and_each_file_counts_once(tmp_path):
    root = tmp_path / "images"
    for name in CLASSES:
        _images(root / name, 5)
    (root / "red" / "sub").symlink_to("..")  # a loop: red/sub/red/sub/... and every other class
    (root / "green" / "blues").symlink_to(root / "blue")  # another class's folder, inside the tree
    os.link(root / "blue" / "000.png", root / "blue" / "hard.png")  # the same file twice
    (root / "blue" / "again.png").symlink_to(root / "blue" / "001.png")
    outside = tmp_path / "more_red"
    _images(outside, 3, value=100)
    (root / "red" / "more").symlink_to(outside)  # a folder outside the tree: followed
    (root / "red" / "more_again").symlink_to(outside)  # ... once
    source = _source(root)
    labels = source.train[1].tolist()
    # 15 files in the tree plus 3 outside it; before, the loop made hundreds of mislabelled images.
    assert len(labels) == 18
    assert labels.count(CLASSES.index("red")) == 8
    assert labels.count(CLASSES.index("blue")) == labels.count(CLASSES.index("green")) == 5


def test_a_link_to_a_folder_holding_the_tree_is_not_walked(tmp_path):
    root = tmp_path / "images"
    for name in CLASSES:
        _images(root / name, 2)
    (root / "blue" / "up").symlink_to(tmp_path)  # holds images/ itself
    assert len(_source(root).train[1]) == 6


def _streamed(root: Path, how: str | None, *more: str):
    from kdrun.data import build_datamodule
    from kdrun.train.validate import validate

    extra = [] if how is None else [f"dataset.fingerprint={how}"]
    cfg = make_cfg(
        "dataset=imagefolder",
        f"dataset.root={root}",
        "dataset.image_size=4",
        "dataset.channels=1",
        "dataset.storage=stream",
        "dataset.split.val=2",
        "dataset.split.test=2",
        "dataset.mean=[0.5]",
        "dataset.std=[0.25]",
        *extra,
        *more,
    )
    validate(cfg)
    return build_datamodule(cfg.dataset)


def _swap_keeping_stat(a: Path, b: Path) -> None:
    """Exchange two files' bytes (same size) and put their modification times back."""
    times = [(p.stat().st_atime_ns, p.stat().st_mtime_ns) for p in (a, b)]
    data_a, data_b = a.read_bytes(), b.read_bytes()
    assert len(data_a) == len(data_b)
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    for path, ns in zip((a, b), times, strict=True):
        os.utime(path, ns=ns)


def test_content_fingerprint_sees_files_replaced_with_their_size_and_mtime_kept(tmp_path):
    root = tmp_path / "images"
    _images(root / "blue", 6, value=0, suffix=".bmp")  # uncompressed: every file the same size
    _images(root / "red", 6, value=200, suffix=".bmp")
    before = {how: _streamed(root, how) for how in ("stat", "content")}
    _swap_keeping_stat(root / "blue" / "000.bmp", root / "red" / "000.bmp")  # labels now wrong
    after = {how: _streamed(root, how) for how in ("stat", "content")}
    assert after["content"].fingerprint != before["content"].fingerprint
    assert after["stat"].fingerprint == before["stat"].fingerprint  # the fast default's known blind spot
    assert _streamed(root, None).fingerprint == after["stat"].fingerprint  # stat is the default
    assert before["content"].fingerprint != before["stat"].fingerprint
    # results.json's data record says which was used.
    assert after["content"].summary()["fingerprint_of"] == "content"
    assert after["stat"].summary()["fingerprint_of"] == "stat"


def test_a_bad_fingerprint_value_is_one_line_naming_the_allowed_ones(tmp_path):
    import pytest

    from kdrun.errors import KdrunConfigError
    from kdrun.train.validate import validate

    cfg = make_cfg("dataset=imagefolder", f"dataset.root={tmp_path}", "dataset.fingerprint=sha1")
    with pytest.raises(KdrunConfigError, match=r"dataset\.fingerprint.*sha1.*stat, content"):
        validate(cfg)


def test_a_truncated_image_met_while_measuring_statistics_is_one_line_before_training(tmp_path):
    import pytest

    from kdrun.data import build_datamodule
    from kdrun.errors import KdrunConfigError
    from kdrun.train.validate import validate

    root = tmp_path / "images"
    _images(root / "blue", 6)
    _images(root / "red", 6, value=200)
    for broken in (root / "red").iterdir():  # every red one: whichever the split puts in train
        broken.write_bytes(broken.read_bytes()[:40])  # the header is there, the pixels are not

    def build(*extra: str):
        cfg = make_cfg(
            "dataset=imagefolder",
            f"dataset.root={root}",
            "dataset.image_size=4",
            "dataset.channels=1",
            "dataset.storage=stream",  # nothing decoded at the scan: the statistics meet it first
            "dataset.split.val=2",
            "dataset.split.test=2",
            *extra,
        )
        validate(cfg)
        return build_datamodule(cfg.dataset)

    with pytest.raises(KdrunConfigError, match=r"dataset\.root=.*red/00\d\.png.*on_bad_file=skip"):
        build()
    assert build("dataset.on_bad_file=skip").normalization["mean"]  # measured without it


def test_files_skipped_while_a_streamed_run_reads_them_are_counted_for_results_json(tmp_path):
    import warnings

    root = tmp_path / "images"
    _images(root / "blue", 6)
    _images(root / "red", 6, value=200)
    for broken in (root / "red").iterdir():  # the scan passes them (not empty); reading them fails
        broken.write_bytes(broken.read_bytes()[:40])
    data = _streamed(root, None, "dataset.on_bad_file=skip", "dataset.num_workers=1")
    (images, labels) = data.splits["train"]
    red = [str(p) for p in images.files if p.parent.name == "red"]
    assert red and data.summary()["bad_files"]["count"] == 0  # nothing read yet
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # each skip warns; counted below
        for _ in data.loader("train"):  # read in a worker process
            pass
    bad = data.summary()["bad_files"]
    assert bad["while_reading"] == len(red) == bad["count"]
    assert sorted(f["path"] for f in bad["files"]) == sorted(red)


def test_files_skipped_by_a_student_on_the_first_n_images_count_in_the_whole_sets_summary(tmp_path):
    import warnings

    root = tmp_path / "images"
    _images(root / "blue", 6)
    _images(root / "red", 6, value=200)
    for broken in (root / "red").iterdir():
        broken.write_bytes(broken.read_bytes()[:40])
    data = _streamed(root, None, "dataset.on_bad_file=skip", "dataset.num_workers=0")
    head = data.head(4)  # what a student on limited data reads
    red = [str(p) for p in head.splits["train"][0].files if p.parent.name == "red"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in head.loader("train"):
            pass
    assert red and data.summary()["bad_files"]["while_reading"] == len(red)
