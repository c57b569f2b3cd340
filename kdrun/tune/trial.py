"""One trial of ``kdrun tune``: the distilled student trained at a point of the space, scored on
the validation split only, with ``val/acc`` reported to the pruner after each epoch.

The teacher comes from the cache (trained by the first trial that needs it) and its train-split
logits from the logit cache; no trial evaluates the test split or measures latency: that is
``kdrun train``'s work, done once for the best point at the end.
"""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import optuna
import torch
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig
from torch import nn

from kdrun.measure import accuracy
from kdrun.runtime.device import placed, resolve
from kdrun.train.phases import Phases
from kdrun.train.prepare import prepare
from kdrun.train.teacher_outputs import distiller
from kdrun.training.fit import fit

METRIC = "val/acc"  # what the pruner compares, epoch by epoch


class PruneOnValAcc(Callback):
    """Optuna's pruning for Lightning: report ``val/acc`` each epoch; raise ``TrialPruned`` when
    the study's pruner says the trial trails the others at this epoch."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        value = trainer.callback_metrics.get(METRIC)
        if trainer.sanity_checking or value is None:
            return
        epoch = trainer.current_epoch
        self.trial.report(float(value), step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch + 1} ({METRIC} {float(value):.4f})")


@contextmanager
def heartbeat(trial: optuna.Trial, every_s: float) -> Iterator[None]:
    """Tell the storage the trial is alive every ``every_s`` seconds while it runs, so another
    process fails it only when this one has died (``optuna.storages.fail_stale_trials``)."""
    storage, stop = trial.storage, threading.Event()

    def beat() -> None:
        while not stop.is_set():
            storage.record_heartbeat(trial._trial_id)
            stop.wait(every_s)

    thread = threading.Thread(target=beat, daemon=True, name="kdrun-tune-heartbeat")
    if storage.is_heartbeat_enabled():
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()


def validation_score(cfg: DictConfig, trial_dir: Path, callbacks: list[Callback]) -> float:
    """Train the distilled student of ``cfg`` and return its validation top-1 (the last epoch's
    model, BatchNorm statistics re-estimated as in ``kdrun train``)."""
    phases = prepare(cfg)
    device = resolve(cfg.trainer).device
    strategy, _ = distiller(cfg, phases, device)
    try:
        fit(
            strategy,
            phases.student_data,
            cfg,
            epochs=strategy.student_epochs(cfg),
            seed=cfg.seed,
            log_dir=trial_dir,
            label="student",
            callbacks=callbacks,
        )
    finally:
        phases.student_data.views = None
    return _val_top1(strategy.student, phases, device)


def _val_top1(model: nn.Module, phases: Phases, device: torch.device) -> float:
    model.eval()
    data = phases.student_data
    with placed(model, device):
        return accuracy(model, data.loader("val", batch_size=512), data.num_classes)["top1"]
