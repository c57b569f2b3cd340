"""Everything that can reject the input of ``kdrun train``, before any training."""

import functools

import torch
from omegaconf import DictConfig, OmegaConf

from kdrun.cache import Cache
from kdrun.cache.stats import cached_stats
from kdrun.data import TensorDataModule, build_datamodule
from kdrun.errors import KdrunConfigError
from kdrun.export import check_settings
from kdrun.models.build import build
from kdrun.models.sections import ensemble_members, is_ensemble
from kdrun.strategies import STRATEGIES
from kdrun.train.phases import Phases
from kdrun.train.validate import validate


@functools.lru_cache(maxsize=2)
def _datamodule(dataset_yaml: str, cache_dir: str) -> TensorDataModule:
    """Load a data set once per process: the points of a sequential sweep share it. A streamed
    set's measured normalisation is kept in the cache (kind ``stats``)."""
    return build_datamodule(OmegaConf.create(dataset_yaml), cached_stats(Cache(cache_dir)))


def prepare(cfg: DictConfig) -> Phases:
    """Config, data, model shapes, the strategy's own checks, given checkpoints: each bad input
    raises ``KdrunConfigError`` here.

    Returns the run's one ``Phases``, holding the data and, when ``teacher.checkpoint`` is set,
    the loaded (and checked) teacher.
    """
    validate(cfg)
    data = _datamodule(OmegaConf.to_yaml(cfg.dataset, resolve=True), str(cfg.paths.cache_dir))
    strategy = STRATEGIES[cfg.strategy.name]
    if is_ensemble(cfg.teacher):
        sections = {f"teacher.model[{i}]": m for i, m in enumerate(ensemble_members(cfg))}
    else:
        sections = {"teacher.name": cfg.teacher}
    sections["student.name"] = cfg.student
    sections |= {f"{key}.name": section for key, section in strategy.sections(cfg).items()}
    for key, section in sections.items():
        _probe(key, section, data)
    strategy.preflight(cfg, data)
    check_settings(cfg.export, train_images=len(data.splits["train"][1]))  # int8 calibration images
    limit, available = cfg.kd.student_limit, len(data.splits["train"][1])
    if limit is not None and not (
        isinstance(limit, int) and not isinstance(limit, bool) and 1 <= limit <= available
    ):
        raise KdrunConfigError(
            "kd.student_limit", limit, f"must be null or an integer in [1, {available}] (the training images)"
        )
    phases = Phases(cfg, data, Cache(cfg.paths.cache_dir))
    for section in sections.values():  # a checkpoint that does not fit its model fails now
        if section.get("checkpoint") and section is not cfg.teacher:
            phases.teacher(section)
    if cfg.teacher.checkpoint:
        phases.teacher()
    return phases


def _probe(key: str, section: DictConfig, data: TensorDataModule) -> None:
    """One forward pass on two training images: a model that cannot take the input fails here."""
    probe = data.splits["train"][0][:2]
    model = build(section, data).eval()
    try:
        with torch.no_grad():
            model(probe)
    except RuntimeError as err:
        reason = str(err).splitlines()[0][:160]
        raise KdrunConfigError(
            key,
            section.name,
            f"cannot run on inputs of shape {tuple(probe.shape[1:])} "
            f"(dataset.image_size / dataset.channels): {reason}",
        ) from None
