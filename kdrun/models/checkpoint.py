"""Load and save weights without executing code from the file."""

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kdrun.errors import KdrunConfigError, require_file
from kdrun.files import atomic_path


def save_weights(model: nn.Module, path: Path) -> None:
    """Write the model's state_dict as safetensors (no pickle, so safe to share)."""
    # A copy per key: safetensors refuses tensors that share memory (a module registered under
    # two names, as FX quantisation shares one fake quantisation between ops).
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def load_weights(model: nn.Module, path: str | Path, key: str) -> nn.Module:
    """Load ``path`` into ``model``: safetensors, a plain state_dict, or a Lightning checkpoint.

    ``torch.load`` runs with ``weights_only=True``, so a pickle that would run code is refused.
    Every failure is a ``KdrunConfigError`` naming the config ``key``.
    """
    path = require_file(key, path)
    state = _read(path, key)
    expected = model.state_dict()
    state = _strip_prefix(state, expected)
    mismatch = _mismatch(state, expected)
    if mismatch:
        raise KdrunConfigError(key, str(path), f"does not fit the configured model: {mismatch}")
    model.load_state_dict(state)
    return model


def _mismatch(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str:
    """One line naming the first missing, unexpected and wrongly shaped keys; empty if all fit."""

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:3]) + (f" (+{len(keys) - 3} more)" if len(keys) > 3 else "")

    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    parts = [
        f"{label}: {some(keys)}"
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape (file vs model)", shapes),
        )
        if keys
    ]
    return "; ".join(parts)


def _read(path: Path, key: str) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = str(err).splitlines()[0]
        raise KdrunConfigError(
            key, str(path), f"refused: holds Python objects beyond weights ({reason})"
        ) from None
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError) as err:
        raise KdrunConfigError(key, str(path), f"unreadable or corrupt ({type(err).__name__})") from None
    # Lightning checkpoints keep the weights under `state_dict`; RepDistiller's and mdistiller's
    # `ckpt_epoch_240.pth` under `model` (next to the optimizer state); others under `net`.
    for wrapper in ("state_dict", "model", "net"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise KdrunConfigError(
            key, str(path), "expected a state_dict (or one under a `state_dict`, `model` or `net` key)"
        )
    return obj


def _strip_prefix(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Drop the wrapper prefix (``model.``, ``strategy.student.`` ...) a training module added.

    The prefix is the one under which most of the model's keys are found, then the fewest other
    keys, then the shortest: a file's key order says nothing (safetensors sorts its keys), and the
    model's first key may also end a submodule's (``conv1.weight``, ``block1.layer.0.conv1.weight``).
    """
    anchor = next(iter(expected))
    candidates = dict.fromkeys(k[: -len(anchor)] for k in state if k.endswith(anchor))

    def fit(prefix: str) -> tuple[int, int, int]:
        found = sum(prefix + k in state for k in expected)
        under = sum(k.startswith(prefix) for k in state)
        return found, found - under, -len(prefix)

    prefix = max(candidates, key=fit, default="")
    if not prefix:
        return state
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
