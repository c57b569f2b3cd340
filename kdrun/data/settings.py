"""Checks of the ``dataset.*`` keys the data code adds; ``kdrun.config.validate`` calls them."""

from omegaconf import DictConfig

from kdrun.errors import KdrunConfigError

BAD_FILE_ACTIONS = ("error", "skip")


def check_dataset(dataset: DictConfig) -> None:
    """Raise ``KdrunConfigError`` for the first bad ``dataset.*`` value of the keys checked here."""
    _choice(dataset, "on_bad_file", BAD_FILE_ACTIONS)


def _choice(dataset: DictConfig, key: str, allowed: tuple) -> None:
    if key in dataset and dataset[key] not in allowed:
        raise KdrunConfigError(f"dataset.{key}", dataset[key], f"allowed: {', '.join(map(str, allowed))}")
