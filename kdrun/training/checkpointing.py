"""Per-epoch checkpoints of a fit, written atomically, and what a resumed fit needs besides them.

Lightning's checkpoint holds the weights, the optimizer and scheduler, and the loop counters. A
resumed fit only reaches the numbers of an uninterrupted one if it also draws the same batch
orders and dropout masks: ``TrainingRandomness`` adds the train loader's shuffle generator and
torch's global RNG to the checkpoint and puts them back before the next epoch starts.
"""

import errno
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from kdrun.console import console
from kdrun.files import atomic_open

LAST = "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a new temporary file next to the target, then ``os.replace`` (``atomic_open``).

    A process killed mid-write leaves the previous checkpoint intact (and a ``.tmp-*`` file that
    ``resume_point`` removes). Lightning's own transaction stages the file in the system temp
    folder, which is a copy, not a rename, when that is another file system.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with atomic_open(path, "wb", fsync=True) as handle:
                torch.save(checkpoint, handle)
        except (OSError, RuntimeError) as err:
            # A full disk surfaces from torch's zip writer as "unexpected pos ..."; say what it is.
            if getattr(err, "errno", None) == errno.ENOSPC or "unexpected pos" in str(err):
                raise OSError(errno.ENOSPC, f"no space left on the device of {path.parent}") from None
            raise


class TrainingRandomness(Callback):
    """Checkpoints the random state Lightning does not: the shuffle generator and torch's global RNG.

    Saved at the end of an epoch (with the checkpoint). On resume, torch's global state is put
    back as the checkpoint loads, before Lightning builds the resumed epoch's loader iterator
    (which draws its workers' base seed from it, as every epoch's does in an uninterrupted fit);
    the shuffle generator, which the loader creates afresh, at the start of that epoch. The
    resumed epochs thus draw the same batch orders and dropout masks.
    """

    def __init__(self) -> None:
        self.shuffle: torch.Tensor | None = None

    def on_save_checkpoint(
        self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = {"torch": torch.get_rng_state(), "shuffle": trainer.datamodule.shuffle_generator.get_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state()
        checkpoint["kdrun_randomness"] = state

    def on_load_checkpoint(
        self, trainer: L.Trainer, module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        state = checkpoint["kdrun_randomness"]
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state(state["cuda"])
        self.shuffle = state["shuffle"]

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if self.shuffle is not None:
            trainer.datamodule.shuffle_generator.set_state(self.shuffle)
            self.shuffle = None


def epoch_checkpoint(folder: Path) -> ModelCheckpoint:
    """``folder/last.ckpt``, overwritten at the end of every training epoch."""
    return ModelCheckpoint(
        dirpath=folder,
        filename=Path(LAST).stem,
        save_top_k=1,  # no monitor: the latest epoch replaces the previous one
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )


def resume_point(folder: Path) -> Path | None:
    """``folder/last.ckpt`` when it exists and loads; ``None`` (with a message) otherwise.

    A checkpoint that cannot be read (truncated, corrupt) is moved aside and the fit starts over:
    it is never handed to Lightning. Temporary files of a write that was killed are removed.
    """
    for stale in folder.glob(".tmp-*"):
        stale.unlink(missing_ok=True)
    path = folder / LAST
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not {"state_dict", "loops", "kdrun_randomness"} <= state.keys():
            raise ValueError("not a kdrun training checkpoint")
    except Exception as err:  # any unreadable file means: start this phase over
        reason = " ".join(str(err).split())[:120]
        path.replace(path.with_name(LAST + ".unusable"))
        console.print(
            f"resume: {path} is unusable ({type(err).__name__}: {reason}); starting this phase over"
        )
        return None
    console.print(f"resume: continuing from {path} (epoch {state.get('epoch', 0) + 1} done)")
    return path
