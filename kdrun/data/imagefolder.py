"""``dataset=imagefolder``: a user's own images, one folder per class, loaded into memory.

Two layouts under ``dataset.root``: ``train/`` (and optionally ``val/``, ``test/``) each holding one
folder per class, or the class folders directly (then ``dataset.split`` cuts val and test from
them). Class names are the sorted folder names of ``train/`` (or ``root``), as torchvision's
ImageFolder does. Images are decoded once, at ``dataset.image_size`` and ``dataset.channels``.
"""

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from kdrun.data.sources import Arrays, register
from kdrun.errors import KdrunConfigError

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
LAYOUT = "a folder with train/ (optional val/, test/) of class folders, or of class folders directly"


@register("imagefolder")
def imagefolder(cfg: DictConfig) -> Arrays:
    """Load ``cfg.root``; ``val/`` and ``test/`` when present, else split by ``dataset.split``."""
    if cfg.root is None or not Path(str(cfg.root)).expanduser().is_dir():
        raise KdrunConfigError("dataset.root", cfg.root, LAYOUT)
    root = Path(str(cfg.root)).expanduser()
    if not (root / "train").is_dir():
        classes = _classes(root)
        return (*_load(root, classes, cfg), None, None, classes)
    classes = _classes(root / "train")
    x, y = _load(root / "train", classes, cfg)
    test = _load(root / "test", classes, cfg) if (root / "test").is_dir() else (None, None)
    val = _load(root / "val", classes, cfg) if (root / "val").is_dir() else ()
    return (x, y, *test, classes, *val)


def _classes(folder: Path) -> list[str]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise KdrunConfigError("dataset.root", str(folder), f"needs at least 2 class folders: {LAYOUT}")
    return classes


def _load(folder: Path, classes: list[str], cfg: DictConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image under ``folder/<class>/`` -> float (N, C, S, S) in [0, 1] and int64 labels."""
    unknown = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name not in classes)
    if unknown:
        raise KdrunConfigError(
            "dataset.root", str(folder / unknown[0]), f"class folder not in the training classes {classes}"
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        found = sorted(p for p in (folder / name).glob("*") if p.suffix.lower() in SUFFIXES)
        files += found
        labels += [label] * len(found)
    if not files:
        raise KdrunConfigError(
            "dataset.root", str(folder), f"no images ({', '.join(SUFFIXES)}) in its class folders"
        )
    mode = "RGB" if cfg.channels == 3 else "L"
    # PIL decodes outside the GIL: threads load a folder of small images several times faster.
    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        images = list(pool.map(lambda path: _read(path, mode, cfg.image_size), files))
    x = torch.from_numpy(np.stack(images)).float().div_(255)
    x = x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)
    return x.contiguous(), torch.tensor(labels, dtype=torch.long)


def _read(path: Path, mode: str, size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert(mode).resize((size, size), Image.Resampling.BILINEAR))
    except (UnidentifiedImageError, OSError) as err:
        raise KdrunConfigError("dataset.root", str(path), f"not a readable image ({err})") from None
