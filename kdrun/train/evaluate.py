"""The report's rows: accuracy on the test and val splits, size, FLOPs and latency of each model."""

import copy
from dataclasses import replace
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun.data import TensorDataModule
from kdrun.measure import accuracy, architecture_id, paired_correct, profile
from kdrun.models.asset import Asset
from kdrun.progress import track
from kdrun.report import deltas, paired_gain
from kdrun.runtime.device import placed, resolve
from kdrun.strategies import Strategy
from kdrun.train.phases import Phases

_SHARED_ROWS: dict[tuple[str, str, str], dict[str, Any]] = {}


def evaluate(strategy: Strategy, phases: Phases, baseline: Asset, student_name: str) -> dict[str, Any]:
    """``teacher``, ``baseline``, ``student``, ``deltas`` and ``extra_models`` of results.json."""
    cfg, data = phases.cfg, phases.data
    teacher_row = member_row(strategy.teacher_member, phases) if strategy.teacher_member else None
    baseline_row = shared_row(replace(baseline, role="baseline"), data, cfg)
    student_row = report_row(strategy.student, data, cfg, name=student_name, source="trained")
    extra = {}
    for member in strategy.members:
        row = member_row(member, phases)
        extra[member.role] = row | (
            {"deltas": deltas(teacher_row, row["scratch"], row)} if "scratch" in row else {}
        )
    if teacher_row and "scratch" in teacher_row:  # a teacher trained in this run has a twin too
        teacher_row["deltas"] = deltas(None, teacher_row["scratch"], teacher_row)
    return {
        "teacher": teacher_row,
        "baseline": baseline_row,
        "student": student_row,
        "deltas": deltas(teacher_row, baseline_row, student_row) | gain_noise(baseline, strategy, phases),
        "extra_models": extra,
    }


def gain_noise(baseline: Asset, strategy: Strategy, phases: Phases) -> dict[str, Any]:
    """The KD gain's standard error and McNemar test over the test images (``paired_gain``)."""
    student, scratch = strategy.student, baseline.model
    device = resolve(phases.cfg.trainer).device
    student.eval()
    scratch.eval()
    with placed(student, device), placed(scratch, device):
        batches = track(phases.data.loader("test", batch_size=512), "paired test: student and scratch")
        counts = paired_correct(student, scratch, batches)
    return paired_gain(*counts)


def member_row(member: Asset, phases: Phases) -> dict[str, Any]:
    """A reported model's row; with its scratch twin's row under ``scratch`` when it has one."""
    row = shared_row(member, phases.data, phases.cfg)
    if member.scratch is not None:
        section, seed = member.scratch
        twin = phases.scratch(section, seed)
        row["scratch"] = shared_row(replace(twin, role="scratch"), phases.data, phases.cfg)
    return row


def shared_row(member: Asset, data: TensorDataModule, cfg: DictConfig) -> dict[str, Any]:
    """The row of a model; one from the cache is measured once per process (sweep points share it)."""
    if member.source not in ("cache", "trained") or member.path is None:
        return report_row(member.model, data, cfg, name=member.name, source=member.source)
    key = (member.path, data.fingerprint, OmegaConf.to_yaml(cfg.measure))
    if key not in _SHARED_ROWS:
        _SHARED_ROWS[key] = report_row(member.model, data, cfg, name=member.name, source=member.source)
    return {**_SHARED_ROWS[key], "source": member.source}


def report_row(
    model: nn.Module, data: TensorDataModule, cfg: DictConfig, name: str, source: str
) -> dict[str, Any]:
    """Accuracy (test top-1/top-5, val top-1) and costs of one model, in eval mode, measured on the
    training device (and the latency on the CPU too)."""
    model.eval()
    row: dict[str, Any] = {"name": name, "source": source}
    device = resolve(cfg.trainer).device
    with placed(model, device):
        for split in ("test", "val"):
            batches = track(data.loader(split, batch_size=512), f"{name}: {split} accuracy")
            top = accuracy(model, batches, data.num_classes)
            row.update(top if split == "test" else {"val_top1": top["top1"]})
        # Cost is a property of the architecture: the scratch and distilled students share one
        # measurement, so their latencies differ only where their architectures do.
        arch = architecture_id(model)
        key = (arch, tuple(data.input_shape), str(device), OmegaConf.to_yaml(cfg.measure))
        if key not in _COSTS:
            _COSTS[key] = {"arch_id": arch, **profile(model, data.input_shape, cfg.measure)}
        row.update(copy.deepcopy(_COSTS[key]))
    return row


_COSTS: dict[tuple[str, tuple[int, ...], str, str], dict[str, Any]] = {}
