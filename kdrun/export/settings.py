"""The ``export`` config section, checked before any training (kdrun.config.validate calls this)."""

from typing import Any

from omegaconf import DictConfig

from kdrun.errors import KdrunConfigError
from kdrun.export.formats import EXTRA, FORMATS


def check_settings(settings: DictConfig | dict[str, Any], key: str = "export") -> None:
    """Reject unknown formats, bad tolerances and missing packages before any training."""
    formats = list(settings["formats"] or [])
    for name in formats:
        if name not in FORMATS:
            raise KdrunConfigError(f"{key}.formats", name, f"allowed: {', '.join(FORMATS)}")
        missing = FORMATS[name].missing()
        if missing:
            raise KdrunConfigError(
                f"{key}.formats", name, f"needs the packages {', '.join(missing)}: {EXTRA}"
            )
    atol, agreement = settings["atol"], settings["min_top1_agreement"]
    if isinstance(atol, bool) or not isinstance(atol, int | float) or not atol > 0:
        raise KdrunConfigError(f"{key}.atol", atol, "must be a number > 0")
    if isinstance(agreement, bool) or not isinstance(agreement, int | float) or not 0 <= agreement <= 1:
        raise KdrunConfigError(f"{key}.min_top1_agreement", agreement, "must be a number in [0, 1]")
