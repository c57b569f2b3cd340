"""Intermediate outputs of a model by module name, through forward hooks that live for one call."""

import difflib

import torch
from torch import nn


def layer_names(model: nn.Module) -> list[str]:
    """Every named submodule (the names ``strategy.pairs`` accepts)."""
    return [name for name, _ in model.named_modules() if name]


def check_layer(model: nn.Module, name: str, key: str, model_name: str) -> None:
    """Raise ``KdrunConfigError`` naming ``key`` when ``name`` is not a submodule of ``model``."""
    from kdrun.errors import KdrunConfigError

    names = layer_names(model)
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
        hint = f"closest: {', '.join(close)}" if close else f"e.g. {', '.join(names[:5])}"
        raise KdrunConfigError(
            key, name, f"not a layer of {model_name}; {hint} (all: `kdrun layers {model_name}`)"
        )


def forward_with_features(
    model: nn.Module, names: list[str], x: torch.Tensor
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``model(x)`` and the outputs of the named submodules. Hooks are removed before returning,
    so nothing stays attached to the model (measurement and export see the plain model)."""
    modules = dict(model.named_modules())
    features: dict[str, torch.Tensor] = {}
    handles = [
        modules[name].register_forward_hook(lambda _m, _i, out, name=name: features.__setitem__(name, out))
        for name in names
    ]
    try:
        out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return out, features


def classifier_name(model: nn.Module) -> str | None:
    """The module path of ``model``'s last ``nn.Linear`` (its classifier), or ``None``."""
    names = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    return names[-1] if names else None


def forward_with_penultimate(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``model(x)`` and the input of its classifier (the last ``nn.Linear``), flattened to (B, D).

    That input is the penultimate representation CRD and similar methods embed: the pooled
    features of a ResNet, WRN, VGG, ShuffleNet or MobileNet. The hook lives for this call only.
    """
    name = classifier_name(model)
    if name is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier")
    captured: list[torch.Tensor] = []
    handle = model.get_submodule(name).register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        out = model(x)
    finally:
        handle.remove()
    return out, captured[-1].flatten(1)
