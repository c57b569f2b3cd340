"""Validation of a composed config: every check runs before any data is loaded or model trained."""

import inspect
import math
from dataclasses import dataclass, fields
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from kdrun.cache.views import check_views
from kdrun.config.schema import MAX_SEED, MISSING, check, choice, number
from kdrun.config.targets import check_targets
from kdrun.data import DATASETS
from kdrun.data.settings import DatasetOptions, SplitOptions, check_dataset
from kdrun.errors import KdrunConfigError, require_file
from kdrun.export.settings import check_settings as check_export
from kdrun.measure import MeasureOptions
from kdrun.models.build import ModelOptions
from kdrun.models.factory import MODELS, STEMS, resolve_name, stem_family
from kdrun.models.sections import ensemble_members, is_ensemble
from kdrun.runtime import nodes
from kdrun.runtime.device import AUTO, resolve
from kdrun.strategies import STRATEGIES
from kdrun.train.estimate import EstimateOptions
from kdrun.training.fit import KDRUN_TRAINER_KEYS, TrainerOptions
from kdrun.training.loggers import check_loggers
from kdrun.training.module import check_optim
from kdrun.training.resume import check_run_dir


@dataclass
class Knobs:
    """The root config's own keys (the groups have their schemas)."""

    T: float = number(MISSING, gt=0)
    alpha: float = number(MISSING, ge=0, le=1)
    seed: int = number(MISSING, ge=0, le=MAX_SEED, integer=True)
    epochs: int = number(MISSING, ge=1, integer=True)
    threads: Any = number(MISSING, ge=1, integer=True, optional=True)
    compile: bool = choice(MISSING, True, False)
    recalibrate_bn: bool = choice(MISSING, True, False)


@dataclass
class KDOptions:
    """The ``kd`` group: how the distillation runs, whatever the method."""

    cache_logits: Any = choice(MISSING, "auto", True, False, "views")
    cache: Any = MISSING  # kd.cache_logits=views: its own schema (kdrun.cache.views.ViewOptions)
    standardize: bool = choice(MISSING, True, False)  # z-scored logits in every soft term
    student_limit: Any = number(MISSING, ge=1, integer=True, optional=True)  # upper bound: prepare


def _number(cfg: DictConfig, key: str, lo: float, hi: float, *, integer: bool = False) -> None:
    """A number in [lo, hi] at a key no schema covers (a model's ``args``, the teacher's seed)."""
    value = _select(cfg, key)
    kind = "an integer" if integer else "a number"
    allowed = f"must be {kind} >= {lo:g} and <= {int(hi) if integer else f'{hi:g}'}"
    ok_type = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not math.isfinite(value):  # nan passes every comparison
        raise KdrunConfigError(key, value, allowed)
    if value < lo or value > hi:
        raise KdrunConfigError(key, value, allowed)


def _select(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _choice(cfg: DictConfig, key: str, allowed: tuple[str, ...] | list[str]) -> None:
    value = _select(cfg, key)
    if value not in allowed:
        raise KdrunConfigError(key, value, f"allowed: {', '.join(map(str, allowed))}")


def _stem(cfg: DictConfig, role: str) -> None:
    _choice(cfg, f"{role}.stem", STEMS)
    section = cfg[role]
    if section.stem == "cifar" and not section.get("library") and section.name not in MODELS:
        name = resolve_name(section.name, section.variant)
        if stem_family(name) is None:
            raise KdrunConfigError(
                f"{role}.stem", "cifar", f"no small-input stem for {name}; use auto or imagenet"
            )


def _only(node: DictConfig, schema: type) -> DictConfig:
    """The keys of ``node`` that ``schema`` describes (the section has others, checked elsewhere)."""
    return OmegaConf.masked_copy(node, [f.name for f in fields(schema) if f.name in node])


def validate(cfg: DictConfig) -> None:
    """Raise ``KdrunConfigError`` for the first bad value; return quietly when all is well."""
    check_targets(cfg)
    for role in ("teacher", "student"):
        if not isinstance(cfg[role], DictConfig):  # Hydra's compose given `student=cnn` untranslated
            raise KdrunConfigError(
                role, cfg[role], f"a section; Hydra's compose takes model@{role}=<name> (kdrun.config.roles)"
            )
        if role == "teacher" and is_ensemble(cfg.teacher):
            ensemble_members(cfg)  # checks members / checkpoints / model
        elif is_ensemble(cfg[role]):  # model/ensemble.yaml is in the group both roles choose from
            raise KdrunConfigError(role, "ensemble", "allowed: a single model; an ensemble only teaches")
        else:
            name = _select(cfg, f"{role}.name")
            resolve_name(name, cfg[role].variant, key=f"{role}.name", library=cfg[role].get("library"))
        check(cfg[role], ModelOptions, role)
        if cfg[role].get("stem") is not None:
            _stem(cfg, role)
        if "dropout" in (cfg[role].get("args") or {}):
            _number(cfg, f"{role}.args.dropout", 0, 1)
    _number(cfg, "teacher.seed", 0, MAX_SEED, integer=True)
    _precision(cfg.teacher.get("precision"), "teacher.precision", nullable=True)
    checkpoint = cfg.teacher.checkpoint
    if checkpoint is not None:
        require_file("teacher.checkpoint", checkpoint)
    _choice(cfg, "strategy.name", sorted(STRATEGIES))
    strategy = STRATEGIES[cfg.strategy.name]
    check(cfg.strategy, strategy.options, "strategy")  # the strategy's own keys
    strategy.sections(cfg)  # its model lists and cross-key rules
    check(OmegaConf.masked_copy(cfg, [f.name for f in fields(Knobs)]), Knobs)
    check(cfg.kd, KDOptions, "kd")
    _choice(cfg, "dataset.name", sorted(DATASETS))
    check(_only(cfg.dataset, DatasetOptions), DatasetOptions, "dataset")
    check(_only(cfg.dataset.split, SplitOptions), SplitOptions, "dataset.split")
    check_dataset(cfg.dataset, cfg.strategy.name)  # storage, loader, augmentation, mixing, bad files
    check_views(cfg)  # kd.cache.*, and what kd.cache_logits=views cannot replay
    check_optim(cfg.optim)
    check(cfg.measure, MeasureOptions, "measure")
    check(cfg.estimate, EstimateOptions, "estimate")
    batches = cfg.measure.batch_sizes
    if not batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batches):
        raise KdrunConfigError(
            "measure.batch_sizes", list(batches), "must be a non-empty list of integers >= 1"
        )
    check_loggers(cfg)
    check_run_dir(cfg.resume)
    _trainer(cfg)
    check_export(cfg.export)


# Trainer arguments kdrun sets itself (kdrun.training.fit): a `trainer.` key for one would collide.
SET_BY_KDRUN = (
    "max_epochs",
    "logger",
    "callbacks",
    "default_root_dir",
    "enable_checkpointing",
    "plugins",
    "enable_model_summary",
    "enable_progress_bar",
    "use_distributed_sampler",
)
PRECISIONS = ("32-true", "16-mixed", "bf16-mixed", "16-true", "bf16-true", "64-true")
LEGACY_PRECISIONS = (32, 16, 64, "32", "16", "bf16")  # Lightning's older spellings


def _precision(value: Any, key: str, nullable: bool = False) -> None:
    if (value is None and nullable) or value == AUTO or value in PRECISIONS + LEGACY_PRECISIONS:
        return
    allowed = ("null",) * nullable + (AUTO, *PRECISIONS)
    raise KdrunConfigError(key, value, f"allowed: {', '.join(allowed)}")


def _trainer(cfg: DictConfig) -> None:
    """The ``trainer`` group: Lightning Trainer arguments kdrun supports, and kdrun's own keys."""
    arguments = set(inspect.signature(L.Trainer.__init__).parameters) - {"self", *SET_BY_KDRUN}
    for key in cfg.trainer:
        if key not in arguments and key not in KDRUN_TRAINER_KEYS:
            hint = {"max_epochs": "; set epochs= / teacher.epochs="}
            raise KdrunConfigError(
                f"trainer.{key}",
                cfg.trainer[key],
                f"allowed: Lightning Trainer arguments that kdrun does not set{hint.get(key, '')}",
            )
    check(_only(cfg.trainer, TrainerOptions), TrainerOptions, "trainer")
    if cfg.trainer.get("num_nodes", 1) > 1 and not nodes.launched():
        raise KdrunConfigError(
            "trainer.num_nodes",
            cfg.trainer.num_nodes,
            "> 1 needs processes started by torchrun or srun (docs/distributed.md); allowed here: 1",
        )
    _precision(cfg.trainer.precision, "trainer.precision")
    resolve(cfg.trainer)  # a GPU asked for on a machine without one
    devices = cfg.trainer.devices
    if devices > 1 and cfg.dataset.batch_size < devices:
        raise KdrunConfigError(
            "dataset.batch_size",
            cfg.dataset.batch_size,
            f"must be >= trainer.devices ({devices}): each DDP process takes a share of every batch",
        )
