"""The phases before the student's: every model a run needs besides the student, loaded from a
checkpoint, reused from the cache, or trained once and cached (teachers, scratch baselines,
distilled assistants). ``Phases`` is what strategies receive as ``kdrun.strategies.Assets``."""

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from kdrun.cache import Cache
from kdrun.cache.logits import load_or_compute
from kdrun.console import console
from kdrun.data import TensorDataModule
from kdrun.files import write_atomic
from kdrun.models import load_weights, save_weights
from kdrun.models.asset import Asset
from kdrun.models.build import build, model_spec
from kdrun.models.ensemble import TeacherEnsemble
from kdrun.models.sections import display_name, ensemble_members, is_ensemble
from kdrun.runtime.device import resolve
from kdrun.strategies.base import Strategy
from kdrun.strategies.scratch import Scratch
from kdrun.strategies.vanilla import Vanilla
from kdrun.training.fit import fit

WEIGHTS = "model.safetensors"
# Trainer keys that change how a run is displayed or what it keeps, not the weights it produces.
COSMETIC_TRAINER_KEYS = {"log_every_n_steps", "enable_progress_bar", "keep_checkpoint"}
# Trainer keys added after cache entries existed: hashed only when not at this value, so the
# entries made before stay valid.
LATER_TRAINER_KEYS = {"strategy": "auto", "benchmark": False}


class Phases:
    """What strategies ask for: teachers, scratch twins, distilled assistants, fresh models.

    Every trained artefact is cached under ``paths.cache_dir`` by a hash of what determines it,
    so sweep points and repeated runs train each one once.
    """

    def __init__(self, cfg: DictConfig, data: TensorDataModule, cache: Cache) -> None:
        self.cfg, self.data, self.cache = cfg, data, cache
        self.T, self.alpha = float(cfg.T), float(cfg.alpha)
        self.seed, self.epochs = int(cfg.seed), int(cfg.student.epochs)
        self._teacher: Asset | None = None  # the configured teacher, once asked for
        # Teachers train on all of ``data``; everything on the student side on ``student_data``.
        limit = cfg.kd.student_limit
        self.student_data = data if limit is None else data.head(limit)

    def build(self, section: DictConfig, seed: int | None = None) -> nn.Module:
        """A fresh model; with ``seed``, initialised from that seed."""
        if seed is not None:
            L.seed_everything(seed, verbose=False)
        return build(section, self.data)

    def teacher(self, section: DictConfig | None = None) -> Asset:
        """A pre-trained teacher: ``section.checkpoint`` when set, else trained once and cached.

        Without ``section``: the configured ``teacher``.
        """
        if section is None:
            if self._teacher is None:
                self._teacher = self.teacher(self.cfg.teacher)
            return self._teacher
        if is_ensemble(section):
            return self._ensemble()
        if section.checkpoint:
            model = load_weights(build(section, self.data), section.checkpoint, "teacher.checkpoint")
            return Asset(model.eval(), display_name(section), "checkpoint", str(section.checkpoint))
        return self._cached("teacher", section, section.seed, Scratch, data=self.data)

    def _ensemble(self) -> Asset:
        """``teacher=ensemble``: each member loaded or trained and cached; combined at ``T``."""
        members = [self.teacher(section) for section in ensemble_members(self.cfg)]
        ensemble = TeacherEnsemble([m.model for m in members], T=self.T).eval()
        identity = "ensemble:" + "+".join(_identity(m) for m in members)
        name = f"ensemble({len(members)}x{members[0].name})"
        return Asset(ensemble, name, "ensemble", identity, members=members)

    def scratch(self, section: DictConfig, seed: int) -> Asset:
        """``section`` trained on the labels alone (student-side data): the twin a distilled model
        is compared with."""
        return self._cached("baseline", section, seed, Scratch)

    def distilled(self, section: DictConfig, teacher: Asset) -> Asset:
        """``section`` distilled from ``teacher`` with ``T`` and ``alpha`` (Hinton), cached."""

        def strategy(model: nn.Module) -> Strategy:
            return Vanilla(model, teacher.model, T=self.T, alpha=self.alpha)

        extra = {"teacher": _identity(teacher), "T": self.T, "alpha": self.alpha}
        return self._cached("assistant", section, section.seed, strategy, extra)

    def _cached(
        self,
        kind: str,
        section: DictConfig,
        seed: int,
        make: Callable[[nn.Module], Strategy],
        extra: dict[str, Any] | None = None,
        data: TensorDataModule | None = None,
    ) -> Asset:
        cfg, data = self._trained_under(section), data or self.student_data
        spec = self._spec(cfg, section, seed, data, extra or {})
        name = display_name(section)

        def train_entry(folder: Path) -> None:
            console.print(f"{kind}: training {name} for {section.epochs} epochs (seed {seed})")
            L.seed_everything(seed, verbose=False)
            model = build(section, data)
            strategy = make(model)
            if cache_logits(cfg, data):
                load_or_compute(strategy, data, self.cache, resolve(cfg.trainer).device)
            metrics = fit(strategy, data, cfg, epochs=section.epochs, seed=seed, log_dir=folder, label=kind)
            save_weights(model, folder / WEIGHTS)
            write_atomic(folder / "metrics.json", json.dumps(metrics, indent=2))

        folder, hit = self.cache.get_or_build(kind, name, spec, train_entry, {"data": data.name})
        if hit:
            console.print(f"{kind}: reusing cached {name} from {folder}")
        model = load_weights(build(section, data), folder / WEIGHTS, f"{kind} cache entry")
        return Asset(model.eval(), name, "cache" if hit else "trained", str(folder))

    def cached(self, kind: str, section: DictConfig, seed: int) -> bool:
        """Whether ``teacher`` or ``baseline`` ``section`` is in the cache already (not trained)."""
        data = self.data if kind == "teacher" else self.student_data
        spec = self._spec(self._trained_under(section), section, seed, data, {})
        return (self.cache.find(kind, display_name(section), spec, {"data": data.name}) / WEIGHTS).is_file()

    def _trained_under(self, section: DictConfig) -> DictConfig:
        """The root config ``section``'s model trains under: a teacher's ``precision``, when set,
        replaces ``trainer.precision`` (a large teacher in bf16, its small student in float32)."""
        precision = section.get("precision")
        if precision is None:
            return self.cfg
        cfg = self.cfg.copy()
        with open_dict(cfg):
            cfg.trainer.precision = precision
        return cfg

    @staticmethod
    def _spec(
        cfg: DictConfig, section: DictConfig, seed: int, data: TensorDataModule, extra: dict[str, Any]
    ) -> dict[str, Any]:
        """What determines a trained model: its cache key hashes this."""
        # The resolved device settings: `auto` on a CPU hashes as the explicit CPU settings did.
        resolved = OmegaConf.to_container(cfg.trainer) | resolve(cfg.trainer).trainer_args()
        trainer = {
            k: v
            for k, v in resolved.items()
            if k not in COSMETIC_TRAINER_KEYS and LATER_TRAINER_KEYS.get(k, object()) != v
        }
        return {
            "model": model_spec(section),
            "epochs": section.epochs,
            "seed": seed,
            "data": data.fingerprint,
            "batch_size": data.batch_size,
            "optim": OmegaConf.to_container(cfg.optim),
            "trainer": trainer,
            "recalibrate_bn": cfg.recalibrate_bn,
            **({"augment": data.augment.settings} if data.augment else {}),
            **({"mix": data.mix.settings} if data.mix else {}),
            **({"compile": True} if cfg.compile else {}),  # compiled kernels round differently
            **extra,
        }


def cache_logits(cfg: DictConfig, data: TensorDataModule) -> bool:
    """``kd.cache_logits``: ``auto`` caches only inputs that are the same every epoch (no
    ``dataset.augment``); ``true`` caches even then (the teacher's targets of un-augmented images);
    ``views`` caches per augmented view, for the distilled student only (``kdrun.cache.views``)."""
    mode = cfg.kd.cache_logits
    if mode == "views":  # stored views are for the student phase (kdrun.cache.views), not these
        return False
    return (data.augment is None and data.mix is None) if mode == "auto" else bool(mode)


def _identity(asset: Asset) -> str:
    """What identifies a teacher's weights in a cache key: its cache folder, or the file's stamp."""
    if asset.source == "ensemble":
        return asset.path
    if asset.source == "checkpoint":
        stat = os.stat(asset.path)
        return f"{os.path.abspath(asset.path)}:{stat.st_size}:{stat.st_mtime_ns}"
    return Path(asset.path).name  # its entry's name: the hash of its own spec, with words for people
