"""Teacher logits over the training split: computed once, stored on disk, shared by every run.

A KD step that reads the teacher's logits by sample index instead of running the teacher costs
what a scratch step costs. The logits are kept in memory for the run and stored in the artefact
cache (kind ``logits``), keyed by

* the function that computes them (the strategy class that defines ``cache_teacher_logits``:
  one teacher's logits, an ensemble's tempered log-probabilities, k members' stacked logits),
* a digest of every frozen model: architecture (``repr``, which holds an ensemble's temperature
  and weighting) and the bytes of its weights,
* the fingerprint of the training inputs, which are the transformed tensors themselves,

so the points of a T x alpha sweep, and later runs with the same teacher and data, read one file.
Only valid for inputs that are the same every epoch: with random augmentation it is not used.
"""

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from kdrun.cache import Cache
from kdrun.data import TensorDataModule
from kdrun.files import atomic_path
from kdrun.progress import track
from kdrun.runtime.device import placed
from kdrun.strategies import Strategy

FILE = "logits.safetensors"
CPU = torch.device("cpu")


def model_digest(model: nn.Module) -> str:
    """A hash of a model's architecture and weights: equal digests, equal outputs."""
    digest = hashlib.sha256(repr(model).encode())
    for name, tensor in model.state_dict().items():
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def _method(strategy: Strategy) -> str:
    owner = next(c for c in type(strategy).__mro__ if "cache_teacher_logits" in vars(c))
    return f"{owner.__module__}.{owner.__qualname__}"


def cache_spec(strategy: Strategy, data: TensorDataModule, device: torch.device = CPU) -> dict[str, str]:
    """What determines the cached tensor (the cache key hashes it). A GPU's kernels round
    differently from the CPU's: logits computed there are other entries."""
    spec = {
        "method": _method(strategy),
        "teachers": ",".join(model_digest(m) for m in strategy.frozen),
        "inputs": data.fingerprint,
    }
    return spec if device.type == "cpu" else spec | {"device": device.type}


def load_or_compute(
    strategy: Strategy, data: TensorDataModule, cache: Cache | None, device: torch.device = CPU
) -> str | None:
    """Give ``strategy`` its cached teacher logits: from disk, or computed once on ``device``
    (the training device) and stored.

    Returns ``"disk"`` or ``"computed"``, or ``None`` when the strategy has no frozen teacher
    whose logits it caches (mutual learning, feature distillation, a soft-label file).
    """
    if not strategy.caches_logits or not strategy.frozen:
        return None

    def compute(folder: Path | None = None) -> None:
        with placed(strategy, device):
            strategy.cache_teacher_logits(track(data.loader("train"), "teacher logits for the logit cache"))
        if folder is not None:
            if not torch.isfinite(strategy.teacher_logits).all():  # never store what would poison every reuse
                raise FloatingPointError("the teacher's logits contain NaN or inf; they are not cached")
            with atomic_path(folder / FILE) as tmp:
                save_file({"logits": strategy.teacher_logits.contiguous()}, str(tmp))

    if cache is None:
        compute()
        return "computed"
    # Words that follow from the key (runs of any method that share these logits share the entry):
    # the computing class when it is not the base's, the first frozen models' classes, the data set.
    method = _method(strategy).rsplit(".", 1)[-1]
    about = {f"teacher_{i}": type(m).__name__.lower() for i, m in enumerate(strategy.frozen[:2])}
    name = "" if method == "Strategy" else method.lower()
    spec = cache_spec(strategy, data, device)
    folder, hit = cache.get_or_build("logits", name, spec, compute, about | {"data": data.name}, method)
    if hit:
        strategy.teacher_logits = load_file(str(folder / FILE))["logits"]
    return "disk" if hit else "computed"
