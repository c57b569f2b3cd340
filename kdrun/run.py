"""``kdrun train`` as a pure task: config in, results dict out (and results.json on disk)."""

import functools
import shutil
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun import __version__, assets
from kdrun.cache import Cache
from kdrun.config import validate
from kdrun.console import console, err_console, fail
from kdrun.data import TensorDataModule, build_datamodule
from kdrun.device import placed, resolve
from kdrun.errors import KdrunConfigError
from kdrun.export import EXPORT_DIR, ExportParityError, check_settings, export_run, export_table
from kdrun.fit import fit
from kdrun.loggers import build_loggers, log_results
from kdrun.logit_cache import load_or_compute
from kdrun.measure import accuracy, profile
from kdrun.models import save_weights
from kdrun.report import deltas, results_table, write_json_atomic
from kdrun.sections import display_name, ensemble_members, is_ensemble
from kdrun.strategies import STRATEGIES, Member, Strategy

RESULTS = "results.json"
CHECKPOINTS = "checkpoints"  # the student phase's last.ckpt, for resume=


def hydra_task(cfg: DictConfig) -> float | None:
    """``kdrun train`` under Hydra: one line and an exit code for a single run; in a sweep,
    a failing point is recorded in its results.json and the sweep goes on.

    Returns the distilled student's *validation* top-1: what a sweeper (Optuna) maximises.
    """
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    started = time.perf_counter()
    try:
        results = train(cfg, run_dir)
    except KdrunConfigError as err:
        if not in_sweep:
            fail(str(err))
        record_failure(cfg, run_dir, err, started)
        return None
    except ExportParityError as err:  # the run's results.json holds the figures and the verdict
        err_console.print(
            f"error: export: {err} (details in {run_dir / RESULTS})", markup=False, soft_wrap=True
        )
        if not in_sweep:
            sys.exit(1)
        return None
    except Exception as err:  # train() recorded it, with the traceback, in results.json
        err_console.print(
            f"error: run failed: {type(err).__name__}: {err} (traceback in {run_dir / RESULTS})",
            markup=False,
            soft_wrap=True,
        )
        if not in_sweep:
            sys.exit(1)
        return None
    return results["student"]["val_top1"]


@functools.lru_cache(maxsize=2)
def _datamodule(dataset_yaml: str) -> TensorDataModule:
    """Load a data set once per process: the points of a sequential sweep share it."""
    return build_datamodule(OmegaConf.create(dataset_yaml))


def prepare(cfg: DictConfig) -> tuple[TensorDataModule, assets.Asset | None]:
    """Everything that can reject the input, before any training: config, data, model shapes,
    the strategy's own checks.

    Returns the data and, when ``teacher.checkpoint`` is set, the loaded (and checked) teacher.
    """
    validate(cfg)
    data = _datamodule(OmegaConf.to_yaml(cfg.dataset, resolve=True))
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
    ctx = assets.Assets(cfg, data, Cache(cfg.paths.cache_dir))
    for section in sections.values():  # a checkpoint that does not fit its model fails now
        if section.get("checkpoint") and section is not cfg.teacher:
            ctx.teacher(section)
    loaded = ctx.teacher() if cfg.teacher.checkpoint else None
    return data, loaded


def _probe(key: str, section: DictConfig, data: TensorDataModule) -> None:
    """One forward pass on two training images: a model that cannot take the input fails here."""
    probe = data.splits["train"][0][:2]
    model = assets.build(section, data).eval()
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


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Teacher -> scratch student -> distilled student; evaluate and measure all three.

    Bad input raises ``KdrunConfigError`` before anything is trained or written. A failure after
    that writes ``results.json`` with ``status: "failed"`` and the error, then re-raises.
    """
    started = time.perf_counter()
    if cfg.resume not in (None, "auto") and Path(cfg.resume).resolve() != run_dir.resolve():
        raise KdrunConfigError("resume", cfg.resume, f"must be this run's directory, {run_dir}")
    data, loaded_teacher = prepare(cfg)
    console.print(resolve(cfg.trainer).line())
    loggers = build_loggers(cfg, run_dir, "student")  # the final results are added to these
    try:
        results = _train(cfg, data, run_dir, loaded_teacher, loggers)
    except Exception as err:
        record_failure(cfg, run_dir, err, started)
        for logger in loggers:
            logger.finalize("failed")
        raise
    results = {"status": "ok", **results, **_header(cfg, run_dir, started)}
    write_json_atomic(run_dir / RESULTS, results)
    log_results(loggers, cfg, results)
    if not cfg.trainer.keep_checkpoint:  # only a run that has not finished needs it
        shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    try:
        if cfg.export.formats:  # the run is complete and recorded; the export adds its section
            results = export_run(run_dir, cfg.export, data=data)
    except ExportParityError as err:
        results = err.results
        raise
    finally:
        show_results(results, run_dir)
    return results


def show_results(results: dict[str, Any], run_dir: Path) -> None:
    """The results table, and the export's parity/latency table when the student was exported."""
    console.print(results_table(results))
    if "export" in results:
        console.print(export_table(results["export"]))
        console.print(f"model card: {run_dir / EXPORT_DIR / 'MODEL_CARD.md'}")
    console.print(f"results: {run_dir / RESULTS}")


def record_failure(cfg: DictConfig, run_dir: Path, err: BaseException, started: float) -> None:
    """Write results.json with ``status: "failed"``, the error and the traceback."""
    failed = {
        "status": "failed",
        "error": f"{type(err).__name__}: {err}",
        "traceback": "".join(traceback.format_exception(err)),
        **_header(cfg, run_dir, started),
    }
    write_json_atomic(run_dir / RESULTS, failed)


def _header(cfg: DictConfig, run_dir: Path, started: float) -> dict[str, Any]:
    elapsed = time.perf_counter() - started
    return {
        "kdrun_version": __version__,
        "started_at": datetime.fromtimestamp(time.time() - elapsed, timezone.utc).isoformat(
            timespec="seconds"
        ),
        "run_dir": str(run_dir),
        "seed": cfg.seed,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "duration_s": round(elapsed, 3),
    }


def _train(
    cfg: DictConfig,
    data: TensorDataModule,
    run_dir: Path,
    loaded_teacher: assets.Asset | None,
    loggers: list[Logger],
) -> dict[str, Any]:
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    placement = resolve(cfg.trainer)
    ctx = assets.Assets(cfg, data, Cache(cfg.paths.cache_dir), loaded_teacher)
    clock = _Clock()
    baseline = ctx.scratch(cfg.student, cfg.seed)
    clock.lap("baseline")

    # Same seed and init as the baseline: a paired comparison (fit re-seeds training itself).
    student = ctx.build(cfg.student, seed=cfg.seed)
    strategy = STRATEGIES[cfg.strategy.name].build(ctx, student)
    student = strategy.student  # the model that ships (e.g. the student with k heads)
    student_data = ctx.student_data
    logits = None
    if assets.cache_logits(cfg, student_data):
        logits = load_or_compute(strategy, student_data, ctx.cache, placement.device)
        if logits == "disk":
            console.print("teacher logits: reusing the cached train-split logits (kdrun/logit_cache.py)")
    elif cfg.kd.cache_logits == "auto":  # cached logits would belong to inputs the student never sees
        console.print(
            "kd.cache_logits: not used, dataset.augment changes the training inputs every epoch "
            "(the teacher runs on each augmented batch; kd.cache_logits=true caches un-augmented targets)"
        )
    clock.lap("teacher")
    console.print(f"student: training {cfg.student.name} with strategy {cfg.strategy.name}")
    fit(
        strategy,
        student_data,
        cfg,
        epochs=strategy.student_epochs(cfg),
        seed=cfg.seed,
        log_dir=run_dir,
        label="student",
        checkpoint_dir=run_dir / CHECKPOINTS,
        resume=cfg.resume is not None,
        loggers=loggers,
    )
    save_weights(student, run_dir / "student.safetensors")
    clock.lap("student")

    teacher_row = _member_row(strategy.teacher_member, ctx, cfg) if strategy.teacher_member else None
    baseline_row = _shared_row(_as_member("baseline", baseline), data, cfg)
    name = strategy.student_name(display_name(cfg.student))
    student_row = _report_row(student, data, cfg, name=name, source="trained")
    extra = {}
    for member in strategy.members:
        row = _member_row(member, ctx, cfg)
        extra[member.role] = row | (
            {"deltas": deltas(teacher_row, row["scratch"], row)} if "scratch" in row else {}
        )
    if teacher_row and "scratch" in teacher_row:  # a teacher trained in this run has a twin too
        teacher_row["deltas"] = deltas(None, teacher_row["scratch"], teacher_row)
    clock.lap("evaluate")
    return {
        "teacher": teacher_row,
        "baseline": baseline_row,
        "student": student_row,
        "deltas": deltas(teacher_row, baseline_row, student_row),
        "strategy": strategy.hparams(),
        "diagnostics": _diagnostics(strategy, data, placement.device),
        "data": {
            "name": cfg.dataset.name,
            "fingerprint": data.fingerprint,
            "num_classes": data.num_classes,
            "input_shape": list(data.input_shape),
            **{split: len(tensors[1]) for split, tensors in data.splits.items()},
            "student_train": len(student_data.splits["train"][1]),
            "build_threads": data.build_threads,
            **data.summary(),
        },
        "extra_models": extra,
        "device": placement.record(),
        "timings_s": clock.laps,
        "teacher_logits": logits,  # disk | computed | null (a live teacher, or none to cache)
        "paths": {
            "teacher": strategy.teacher_member.path if strategy.teacher_member else None,
            "baseline": baseline.path,
            "student": str(run_dir / "student.safetensors"),
            **{role: m.path for role, m in ((m.role, m) for m in strategy.members) if m.path},
        },
    }


def _diagnostics(strategy: Strategy, data: TensorDataModule, device: torch.device) -> dict[str, Any]:
    with placed(strategy, device):
        return strategy.diagnostics(data)


class _Clock:
    """Wall time of each phase, so a user sees what a cache hit saved."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(now - self.last, 3)
        self.last = now


_SHARED_ROWS: dict[tuple[str, str, str], dict[str, Any]] = {}


def _member_row(member: Member, ctx: assets.Assets, cfg: DictConfig) -> dict[str, Any]:
    """A reported model's row; with its scratch twin's row under ``scratch`` when it has one."""
    row = _shared_row(member, ctx.data, cfg)
    if member.scratch is not None:
        section, seed = member.scratch
        twin = ctx.scratch(section, seed)
        row["scratch"] = _shared_row(_as_member("scratch", twin), ctx.data, cfg)
    return row


def _as_member(role: str, asset: assets.Asset) -> Member:
    return Member(role, asset.model, asset.name, asset.source, asset.path)


def _shared_row(member: Member, data: TensorDataModule, cfg: DictConfig) -> dict[str, Any]:
    """The row of a model; one from the cache is measured once per process (sweep points share it)."""
    if member.source not in ("cache", "trained") or member.path is None:
        return _report_row(member.model, data, cfg, name=member.name, source=member.source)
    key = (member.path, data.fingerprint, OmegaConf.to_yaml(cfg.measure))
    if key not in _SHARED_ROWS:
        _SHARED_ROWS[key] = _report_row(member.model, data, cfg, name=member.name, source=member.source)
    return {**_SHARED_ROWS[key], "source": member.source}


def _report_row(
    model: nn.Module, data: TensorDataModule, cfg: DictConfig, name: str, source: str
) -> dict[str, Any]:
    """Accuracy and costs, measured on the training device (and the latency on the CPU too)."""
    model.eval()
    row: dict[str, Any] = {"name": name, "source": source}
    with placed(model, resolve(cfg.trainer).device):
        row.update(accuracy(model, data.loader("test", batch_size=512), data.num_classes))
        row["val_top1"] = accuracy(model, data.loader("val", batch_size=512), data.num_classes)["top1"]
        row.update(profile(model, data.input_shape, cfg.measure))
    return row
