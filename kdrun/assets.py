"""Teachers and scratch baselines: load a checkpoint, reuse a cache entry, or train and cache."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun.cache import Cache
from kdrun.console import console
from kdrun.data import TensorDataModule
from kdrun.fit import fit
from kdrun.models import create_model, load_weights, save_weights
from kdrun.strategies.scratch import Scratch

WEIGHTS = "model.safetensors"
# Trainer keys that change how a run is displayed, not the weights it produces.
COSMETIC_TRAINER_KEYS = {"log_every_n_steps", "enable_progress_bar"}


@dataclass
class Asset:
    """A ready model and where it came from (``checkpoint``, ``cache`` or ``trained``)."""

    model: nn.Module
    source: str
    path: str


def model_spec(section: DictConfig) -> dict[str, Any]:
    """The keys of a ``teacher``/``student`` section that define the architecture."""
    keys = ("name", "variant", "args", "pretrained", "bn_momentum", "channels_last")
    return {k: OmegaConf.to_container(section[k]) if k == "args" else section[k] for k in keys}


def build(section: DictConfig, data: TensorDataModule) -> nn.Module:
    """An untrained model for a ``teacher``/``student`` section, sized for ``data``."""
    return create_model(model_spec(section), data.num_classes, data.input_shape)


def teacher(cfg: DictConfig, data: TensorDataModule, cache: Cache) -> Asset:
    """The teacher: ``teacher.checkpoint`` when set, else trained once and cached."""
    if cfg.teacher.checkpoint:
        model = load_weights(build(cfg.teacher, data), cfg.teacher.checkpoint, "teacher.checkpoint")
        return Asset(model.eval(), "checkpoint", str(cfg.teacher.checkpoint))
    return _cached("teacher", cfg.teacher, cfg.teacher.seed, cfg, data, cache)


def baseline(cfg: DictConfig, data: TensorDataModule, cache: Cache) -> Asset:
    """The student architecture trained without a teacher, same budget and seed as the student."""
    return _cached("baseline", cfg.student, cfg.seed, cfg, data, cache)


def _cached(
    kind: str, section: DictConfig, seed: int, cfg: DictConfig, data: TensorDataModule, cache: Cache
) -> Asset:
    trainer = {k: v for k, v in OmegaConf.to_container(cfg.trainer).items() if k not in COSMETIC_TRAINER_KEYS}
    spec = {
        "model": model_spec(section),
        "epochs": section.epochs,
        "seed": seed,
        "data": data.fingerprint,
        "batch_size": data.batch_size,
        "optim": OmegaConf.to_container(cfg.optim),
        "trainer": trainer,
        "recalibrate_bn": cfg.recalibrate_bn,
    }

    def train_entry(folder: Path) -> None:
        console.print(f"{kind}: training {section.name} for {section.epochs} epochs (seed {seed})")
        L.seed_everything(seed, verbose=False)
        model = build(section, data)
        metrics = fit(Scratch(model), data, cfg, epochs=section.epochs, seed=seed, log_dir=folder, label=kind)
        save_weights(model, folder / WEIGHTS)
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))

    name = section.name if section.variant is None else f"{section.name}_{section.variant}"
    folder, hit = cache.get_or_build(kind, name, spec, train_entry)
    if hit:
        console.print(f"{kind}: reusing cached {name} from {folder}")
    model = load_weights(build(section, data), folder / WEIGHTS, f"{kind} cache entry")
    return Asset(model.eval(), "cache" if hit else "trained", str(folder))
