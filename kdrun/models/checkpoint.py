"""Load and save weights without executing code from the file."""

import pickle
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.files import as_user_file


def save_weights(model: nn.Module, path: Path) -> None:
    """Write the model's state_dict as safetensors (no pickle, so safe to share)."""
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(path))
    as_user_file(path)


def load_weights(model: nn.Module, path: str | Path, key: str) -> nn.Module:
    """Load ``path`` into ``model``: safetensors, a plain state_dict, or a Lightning checkpoint.

    ``torch.load`` runs with ``weights_only=True``, so a pickle that would run code is refused.
    Every failure is a ``KdrunConfigError`` naming the config ``key``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise KdrunConfigError(key, str(path), "file does not exist")
    state = _read(path, key)
    state = _strip_prefix(state, model.state_dict())
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise KdrunConfigError(key, str(path), f"does not fit the configured model: {first}") from None
    return model


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
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # Lightning checkpoint
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise KdrunConfigError(key, str(path), "expected a state_dict or a Lightning checkpoint")
    return obj


def _strip_prefix(
    state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Drop the wrapper prefix (``model.``, ``strategy.student.`` ...) a training module added."""
    anchor = next(iter(expected))
    prefix = next((k[: -len(anchor)] for k in state if k.endswith(anchor)), "")
    if not prefix:
        return state
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
