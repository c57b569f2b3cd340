"""The teacher's outputs a run reads instead of running the teacher: the logit cache, or the
stored views of ``kd.cache_logits=views``."""

from typing import Any

import torch
from omegaconf import DictConfig

from kdrun.cache.logits import load_or_compute
from kdrun.cache.views import load_or_build
from kdrun.console import console
from kdrun.strategies import STRATEGIES, Strategy
from kdrun.train.phases import Phases, cache_logits


def teacher_outputs(
    cfg: DictConfig, strategy: Strategy, phases: Phases, device: torch.device
) -> str | dict[str, Any] | None:
    """Give the strategy its teacher's train-split logits from the logit cache, when it applies
    (with ``kd.cache_logits=views``, its outputs on stored views, and the data those views)."""
    if cfg.kd.cache_logits == "views":
        views = load_or_build(strategy, phases.student_data, phases.cache, cfg.kd.cache, device)
        how = "reusing" if views["source"] == "disk" else f"built in {views['build_seconds']:.1f} s,"
        k = "all classes" if views["topk"] is None else f"top-{views['topk']}, rest {views['rest']}"
        console.print(
            f"teacher outputs: {how} {views['views']} stored views per image ({k}, "
            f"{views['bytes_per_image']:.0f} bytes per image) from {views['entry']}; no teacher forward",
            markup=False,
        )
        return views
    if cache_logits(cfg, phases.student_data):
        logits = load_or_compute(strategy, phases.student_data, phases.cache, device)
        if logits == "disk":
            console.print("teacher logits: reusing the cached train-split logits (kdrun/cache/logits.py)")
        return logits
    if cfg.kd.cache_logits == "auto":  # cached logits would belong to inputs the student never sees
        console.print(
            "kd.cache_logits: not used, dataset.augment changes the training inputs every epoch "
            "(the teacher runs on each augmented batch; kd.cache_logits=true caches un-augmented targets)"
        )
    return None


def distiller(cfg: DictConfig, phases: Phases, device: torch.device) -> tuple[Strategy, dict[str, Any]]:
    """The configured strategy around a new student (the scratch baseline's seed and init, so the
    two are paired), with its teacher's outputs attached; returns it and what results.json records."""
    student = phases.build(cfg.student, seed=cfg.seed)
    strategy = STRATEGIES[cfg.strategy.name].build(phases, student)
    strategy.standardize = bool(cfg.kd.standardize)
    return strategy, teacher_outputs(cfg, strategy, phases, device)
