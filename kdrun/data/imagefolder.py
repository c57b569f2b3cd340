"""``dataset=imagefolder``: a user's own images, one folder per class.

Two layouts under ``dataset.root``: ``train/`` (and optionally ``val/``, ``test/``) each holding one
folder per class, or the class folders directly (then ``dataset.split`` cuts val and test from
them). Class names are the sorted folder names of ``train/`` (or ``root``), as torchvision's
ImageFolder does; images are found at any depth below a class folder. Names starting with a dot
(``.ipynb_checkpoints``, ``.DS_Store``, ``._photo.jpg``) are ignored everywhere, and so are files
without an image suffix. A directory link is followed unless it resolves into the data folder, to
a folder that holds it, or to a folder already walked (``ln -s .. red/sub`` is skipped, not walked
forever), and a file reached twice (links, hard links) is counted once, where it is first found.

Files we read may be hostile: only regular files are opened (a FIFO would block the reader
forever), an image larger than PIL's decompression-bomb limit is refused before it is decoded, and
every failure names the file. ``dataset.on_bad_file=skip`` leaves bad files out and lists them.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from kdrun.data.decode import SKIP_HINT, BadImage, decode, fit, stat_problem
from kdrun.data.sources import Source, register, streams
from kdrun.errors import KdrunConfigError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LAYOUT = "a folder with train/ (optional val/, test/) of class folders, or of class folders directly"


@register("imagefolder")
def imagefolder(cfg: DictConfig) -> Source:
    """Scan ``cfg.root``; ``val/`` and ``test/`` when present, else split by ``dataset.split``.

    The images are decoded into memory, or (``dataset.storage``) left in their files and read per
    sample while training.
    """
    root = folder_root(cfg)
    skip = cfg.get("on_bad_file", "error") == "skip"
    top = root / "train" if (root / "train").is_dir() else root
    classes = _classes(top)
    folders = {"train": top} | {s: root / s for s in ("val", "test") if top != root and (root / s).is_dir()}
    walker = Walker(root)
    scanned = {split: scan(folder, classes, skip, walker) for split, folder in folders.items()}
    bad = [b.as_record() for _, _, found in scanned.values() for b in found]
    count = sum(len(files) for files, _, _ in scanned.values())
    stream = streams(cfg, count)

    def load(files: list[Path], labels: list[int]) -> tuple:
        if stream:
            from kdrun.data.stream import FileImages

            images = FileImages(files, cfg.channels, cfg.image_size, cfg.get("eval_resize"), skip)
            return images, torch.tensor(labels, dtype=torch.long)
        return _decode_all(files, labels, cfg, skip, bad)

    splits = {split: load(files, labels) for split, (files, labels, _) in scanned.items()}
    return Source(splits["train"], classes, test=splits.get("test"), val=splits.get("val"), bad_files=bad)


def folder_root(cfg: DictConfig) -> Path:
    if cfg.root is None or not Path(str(cfg.root)).expanduser().is_dir():
        raise KdrunConfigError("dataset.root", cfg.root, LAYOUT)
    return Path(str(cfg.root)).expanduser()


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _classes(folder: Path) -> list[str]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and _visible(p.name))
    if len(classes) < 2:
        raise KdrunConfigError("dataset.root", str(folder), f"needs at least 2 class folders: {LAYOUT}")
    return classes


def scan(
    folder: Path, classes: list[str], skip: bool, walker: "Walker"
) -> tuple[list[Path], list[int], list[BadImage]]:
    """Image files under ``folder/<class>/`` (any depth, sorted) and their labels, without decoding.

    Checks what ``stat`` can tell: a FIFO, device or socket, or an empty file, is bad — raised as a
    ``KdrunConfigError`` naming the file, or (``skip``) returned in the third list.
    """
    folders = [p.name for p in folder.iterdir() if p.is_dir() and _visible(p.name)]
    unknown = sorted(name for name in folders if name not in classes)
    if unknown:
        raise KdrunConfigError(
            "dataset.root", str(folder / unknown[0]), f"class folder not in the training classes {classes}"
        )
    files, labels, bad = [], [], []
    for label, name in enumerate(classes):
        if not (folder / name).is_dir():
            continue
        for path in walker.images(folder / name):
            problem = stat_problem(path)
            if problem is None:
                files.append(path)
                labels.append(label)
            elif skip:
                bad.append(BadImage(path, problem))
            else:
                raise KdrunConfigError("dataset.root", str(path), f"{problem}; {SKIP_HINT}")
    if not files:
        raise KdrunConfigError(
            "dataset.root", str(folder), f"no images ({', '.join(SUFFIXES)}) in its class folders"
        )
    return files, labels, bad


class Walker:
    """Walks the class folders of one data set: no directory link back into it, each real file once."""

    def __init__(self, root: Path) -> None:
        self.root = os.path.realpath(root)
        self.dirs: set[str] = set()
        self.files: set[tuple[int, int]] = set()

    def images(self, folder: Path) -> list[Path]:
        """Files with an image suffix at any depth below ``folder``, sorted; hidden names left out."""
        found = []
        for parent, dirs, names in os.walk(folder, followlinks=True):
            self.dirs.add(os.path.realpath(parent))
            dirs[:] = [d for d in sorted(dirs) if _visible(d) and self._follow(os.path.join(parent, d))]
            found += [Path(parent, n) for n in names if _visible(n) and Path(n).suffix.lower() in SUFFIXES]
        return [path for path in sorted(found) if self._first(path)]

    def _follow(self, path: str) -> bool:
        real = os.path.realpath(path)
        if real in self.dirs:
            return False
        if not os.path.islink(path):
            return True
        inside = real == self.root or real.startswith(self.root.rstrip(os.sep) + os.sep)
        holds_root = self.root.startswith(real.rstrip(os.sep) + os.sep)
        return not (inside or holds_root)

    def _first(self, path: Path) -> bool:
        try:
            info = os.stat(path)
        except OSError:  # a dangling link: kept, so that the scan names it
            return True
        key = (info.st_dev, info.st_ino)
        if key in self.files:
            return False
        self.files.add(key)
        return True


def _decode_all(
    files: list[Path], labels: list[int], cfg: DictConfig, skip: bool, bad: list[dict[str, str]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode every file -> uint8 (N, C, S, S) and int64 labels."""

    def read(path: Path) -> np.ndarray | BadImage:
        try:
            return np.asarray(fit(decode(path, cfg.channels), cfg.image_size, cfg.get("eval_resize")))
        except BadImage as err:
            return err

    # PIL decodes outside the GIL: threads load a folder of small images several times faster.
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        images = list(pool.map(read, files))
    kept, kept_labels = [], []
    for image, label in zip(images, labels, strict=True):
        if isinstance(image, BadImage):
            if not skip:
                raise KdrunConfigError("dataset.root", str(image.path), f"{image.reason}; {SKIP_HINT}")
            bad.append(image.as_record())
        else:
            kept.append(image)
            kept_labels.append(label)
    if not kept:
        raise KdrunConfigError("dataset.root", str(files[0].parent), "every image file there is unreadable")
    x = torch.from_numpy(np.stack(kept))
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.contiguous(), torch.tensor(kept_labels, dtype=torch.long)
