"""One run across several nodes: every process started by torchrun or SLURM (``srun``) runs the
same ``kdrun train``; cached phases are built by rank 0 alone while the others wait.

A process is *launched* when its launcher set a world of several processes (torchrun's
``WORLD_SIZE``/``RANK``, or the ``SLURM_STEP_NUM_TASKS``/``SLURM_PROCID`` that ``srun`` sets for
its tasks; a batch script's own shell, outside ``srun``, is one process): Lightning's
standard DDP launcher then uses those processes instead of starting its own. kdrun joins them in
one process group at the start (``start``), so that a cache entry — a teacher, a scratch baseline,
teacher logits — is trained or read by rank 0 alone, in a fit of its own (``alone``), while the
others wait at a barrier and then read the same entry. The student's fit spans every process;
evaluation and results.json happen once, on rank 0.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

T = TypeVar("T")
# A barrier waits while rank 0 trains a teacher alone: allow a long phase before giving up.
BARRIER_TIMEOUT = timedelta(hours=24)
_alone = False  # inside a phase that rank 0 runs by itself


def world_size() -> int:
    """Processes in the run as their launcher set it (1 when kdrun started alone)."""
    for key in ("WORLD_SIZE", "SLURM_STEP_NUM_TASKS"):
        if os.environ.get(key, "").isdigit():
            return int(os.environ[key])
    return 1


def rank() -> int:
    """This process's global rank (0 when kdrun started alone)."""
    for key in ("RANK", "SLURM_PROCID"):
        if os.environ.get(key, "").isdigit() and (key == "RANK" or "SLURM_STEP_NUM_TASKS" in os.environ):
            return int(os.environ[key])
    return 0


def launched() -> bool:
    """Whether an external launcher started several processes of this run."""
    return world_size() > 1


def is_main() -> bool:
    """Rank 0, the process that evaluates and writes the results (True when alone)."""
    return rank() == 0


def is_alone() -> bool:
    """Inside a phase rank 0 runs by itself: its fit must not wait for the other processes."""
    return _alone


def synced() -> bool:
    """Whether metrics reduce over a process group: one exists and this is not a phase alone."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and not _alone


def start(backend: str) -> None:
    """Join the launched processes in one process group (``gloo`` on CPU, ``nccl`` on GPUs).

    Lightning finds the group already made and uses it for the student's DDP fit.
    """
    import torch.distributed as dist

    if launched() and not dist.is_initialized():
        if "RANK" not in os.environ:  # an srun task: env:// reads these
            os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank()), str(world_size())
        if backend == "nccl":  # each process on its own GPU of the node
            import torch

            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", 0))))
        dist.init_process_group(backend, timeout=BARRIER_TIMEOUT)


def rank_zero_first(build: Callable[[], T], read: Callable[[], T]) -> T:
    """``build()`` on rank 0 alone while the other ranks wait, then ``read()`` on the others.

    Without a launched process group, just ``build()``.
    """
    import torch.distributed as dist

    if not (launched() and dist.is_initialized()) or _alone:
        return build()
    if is_main():
        try:
            with alone():
                result = build()
        finally:
            dist.barrier()  # also on failure, so the others stop waiting (and fail reading)
        return result
    dist.barrier()
    return read()


@contextmanager
def alone() -> Iterator[None]:
    """A phase this process runs by itself: its fit is one process, its metrics are not reduced."""
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before
