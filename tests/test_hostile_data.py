"""Hostile data folders: directory links back into the tree, files reached twice, stale streamed data."""

import os
from pathlib import Path

import numpy as np
from PIL import Image

from kdrun.data.imagefolder import imagefolder
from tests.conftest import make_cfg

CLASSES = ("blue", "green", "red")


def _images(folder: Path, count: int, value: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((4, 4), value + i, dtype=np.uint8)).save(folder / f"{i:03d}.png")


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
