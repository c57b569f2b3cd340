"""Decoding one image file defensively: any PIL mode to ``L``/``RGB``, bad files named.

Shared by the in-memory image-folder loader and the streamed data set.
"""

import os
import stat
from pathlib import Path

import numpy as np

SKIP_HINT = "dataset.on_bad_file=skip leaves such files out"
# 16-bit and 32-bit integer modes: full 16-bit range -> 0..255 (PIL's own convert clips at 255).
WIDE_MODES = ("I", "I;16", "I;16L", "I;16B", "I;16N")


class BadImage(Exception):
    """A file under the image folder that cannot be used as an image; the message says why."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")

    def as_record(self) -> dict[str, str]:
        return {"path": str(self.path), "reason": self.reason}


def stat_problem(path: Path) -> str | None:
    """Why ``path`` cannot be opened as an image file without reading it, or None."""
    try:
        info = os.stat(path)
    except OSError as err:  # a dangling link, no permission
        return f"cannot be read ({err.strerror})"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file (a FIFO, device or socket)"
    if info.st_size == 0:
        return "an empty file (0 bytes)"
    return None


def fit(image: "Image.Image", size: int, eval_resize: int | None) -> "Image.Image":  # noqa: F821
    """The evaluation geometry: squash to size x size, or resize the shorter side to
    ``eval_resize`` and cut the centre size x size (the ImageNet convention, e.g. 256 then 224)."""
    from PIL import Image
    from torchvision.transforms import v2

    if eval_resize is None:
        return image.resize((size, size), Image.Resampling.BILINEAR)
    image = v2.functional.resize(image, [int(eval_resize)], antialias=True)
    return v2.functional.center_crop(image, [size, size])


def decode(path: Path, channels: int) -> "Image.Image":  # noqa: F821  (PIL is imported lazily)
    """Open and fully decode one image into mode ``L`` (channels=1) or ``RGB`` (3); ``BadImage`` if not."""
    from PIL import Image

    problem = stat_problem(path)  # also checked here: files change between the scan and a read
    if problem is not None:
        raise BadImage(path, problem)
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > Image.MAX_IMAGE_PIXELS:  # refuse before the pixels are decoded
                limit = Image.MAX_IMAGE_PIXELS
                raise BadImage(path, f"refused as a decompression bomb ({width}x{height} > {limit} pixels)")
            image.load()
            return to_channels(image, channels)
    except BadImage:
        raise
    except Image.DecompressionBombError as err:
        raise BadImage(path, f"refused as a decompression bomb ({err})") from None
    except Image.UnidentifiedImageError:
        raise BadImage(path, "not a readable image (no image format recognised)") from None
    except Exception as err:  # noqa: BLE001  (truncated or corrupt data: PIL raises many types)
        raise BadImage(path, f"not a readable image ({type(err).__name__}: {err})") from None


def to_channels(image: "Image.Image", channels: int) -> "Image.Image":  # noqa: F821
    """Any PIL mode -> ``L`` or ``RGB``: 16-bit grey scaled to 8 bits, palette and alpha resolved.

    16-bit (``I;16``, ``I``) maps 0..65535 to 0..255 with rounding; 32-bit float (``F``) is read as
    0..1. Alpha is dropped (as torchvision's loader does); a palette with transparency goes
    through RGBA so PIL keeps its colours; CMYK and YCbCr convert with PIL's formulas.
    """
    from PIL import Image

    target = "RGB" if channels == 3 else "L"
    if image.mode in WIDE_MODES or image.mode == "F":
        pixels = np.asarray(image)
        if image.mode == "F":
            grey = np.rint(np.clip(np.nan_to_num(pixels), 0.0, 1.0) * 255)
        else:
            wide = np.clip(pixels.astype(np.int64), 0, 65535)
            grey = (wide * 255 + 32767) // 65535
        image = Image.fromarray(grey.astype(np.uint8))  # 2-D uint8: mode L
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    elif image.mode in ("LAB", "HSV"):
        raise ValueError(f"colour mode {image.mode} is not supported")
    return image if image.mode == target else image.convert(target)
