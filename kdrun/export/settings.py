"""The ``export`` config section, checked before any training (kdrun.config.validate calls this)."""

import difflib
from typing import Any

from omegaconf import DictConfig

from kdrun.errors import KdrunConfigError
from kdrun.export.formats import EXTRA, FORMATS
from kdrun.export.quantize import CALIBRATION_METHODS, MIN_CALIBRATION_IMAGES

# int8 settings, for callers (and older results) that give only the fp32 ones
INT8_DEFAULTS = {"calibration_images": 256, "calibration_method": "minmax", "max_int8_drop": 1.0}


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def resolve_formats(formats: list[str], quantized: bool = False) -> list[str]:
    """The formats to write, in order, each after the fp32 format it quantises (``onnx_int8``
    needs ``onnx``: the int8 file is made from it and timed against it) unless the student is
    ``quantized`` already (quantisation-aware training)."""
    ordered: list[str] = []
    for name in formats:
        base = FORMATS[name].base
        if base is not None and base not in ordered and not quantized:
            ordered.append(base)
        if name not in ordered:
            ordered.append(name)
    return ordered


def int8_settings(settings: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The int8 keys of ``settings``, defaults filled in."""
    return {key: settings.get(key, default) for key, default in INT8_DEFAULTS.items()}


def check_settings(
    settings: DictConfig | dict[str, Any], key: str = "export", train_images: int | None = None
) -> None:
    """Reject unknown formats, bad tolerances and missing packages before any training.

    ``train_images``: the size of the training split, when known; calibration draws from it.
    """
    formats = list(settings["formats"] or [])
    for name in formats:
        if name not in FORMATS:
            close = difflib.get_close_matches(str(name), FORMATS, n=1)
            hint = f" (closest: {close[0]})" if close else ""
            raise KdrunConfigError(f"{key}.formats", name, f"allowed: {', '.join(FORMATS)}{hint}")
        missing = FORMATS[name].missing()
        if missing:
            raise KdrunConfigError(
                f"{key}.formats", name, f"needs the packages {', '.join(missing)}: {EXTRA}"
            )
    atol, agreement = settings["atol"], settings["min_top1_agreement"]
    if not _is_number(atol) or not atol > 0:
        raise KdrunConfigError(f"{key}.atol", atol, "must be a number > 0")
    if not _is_number(agreement) or not 0 <= agreement <= 1:
        raise KdrunConfigError(f"{key}.min_top1_agreement", agreement, "must be a number in [0, 1]")
    int8 = int8_settings(settings)
    images, method, drop = int8["calibration_images"], int8["calibration_method"], int8["max_int8_drop"]
    if method not in CALIBRATION_METHODS:
        close = difflib.get_close_matches(str(method), CALIBRATION_METHODS, n=1)
        hint = f" (closest: {close[0]})" if close else ""
        raise KdrunConfigError(
            f"{key}.calibration_method", method, f"allowed: {', '.join(CALIBRATION_METHODS)}{hint}"
        )
    if not _is_number(drop) or not drop >= 0:
        raise KdrunConfigError(f"{key}.max_int8_drop", drop, "must be a number >= 0 (top-1 points)")
    if not any(FORMATS[name].base for name in formats):
        train_images = None  # the size of the training split matters only to a calibration
    upper = "" if train_images is None else f" and <= {train_images} (the training images)"
    if (
        isinstance(images, bool)
        or not isinstance(images, int)
        or images < MIN_CALIBRATION_IMAGES
        or (train_images is not None and images > train_images)
    ):
        raise KdrunConfigError(
            f"{key}.calibration_images",
            images,
            f"must be an integer >= {MIN_CALIBRATION_IMAGES}{upper}",
        )
