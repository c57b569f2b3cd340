"""``kdrun export-soft-labels``: write a teacher's train-split logits to a file a student can use
without the teacher (``strategy=soft_labels``)."""

from pathlib import Path

import torch
from omegaconf import DictConfig

from kdrun.console import console, fail
from kdrun.data.soft_labels import write_soft_labels
from kdrun.errors import KdrunConfigError
from kdrun.runtime.device import placed, resolve, to_device
from kdrun.train.prepare import prepare


def export_task(cfg: DictConfig) -> Path:
    """Load (``teacher.checkpoint``) or train/reuse the configured teacher; write ``out``."""
    if not cfg.out or not str(cfg.out).endswith(".safetensors"):
        fail(str(KdrunConfigError("out", cfg.out, "must be a path ending in .safetensors")))
    try:
        phases = prepare(cfg)
    except KdrunConfigError as err:
        fail(str(err))
    placement = resolve(cfg.trainer)
    console.print(placement.line())
    data, teacher = phases.data, phases.teacher()
    teacher.model.eval()
    with torch.no_grad(), placed(teacher.model, placement.device):
        batches = data.loader("train", batch_size=512)
        logits = torch.cat([teacher.model(to_device(x, placement.device)).cpu() for x, *_ in batches])
    out = Path(cfg.out).expanduser()
    write_soft_labels(out, logits, data, teacher=teacher.name, dataset=cfg.dataset.name)
    console.print(
        f"wrote {len(logits)} x {logits.shape[1]} teacher logits ({teacher.name}, {teacher.source}) to {out}"
    )
    return out
