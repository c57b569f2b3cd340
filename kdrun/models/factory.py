"""``create_model(spec, num_classes, input_shape)``: one factory that hides model-zoo differences."""

import difflib
import math
from collections.abc import Callable, Mapping
from importlib.util import find_spec
from typing import Any

import torch
import torchvision
from torch import nn

from kdrun.errors import KdrunConfigError
from kdrun.models.cifar import CIFAR_MODELS
from kdrun.models.small import CNN, MLP

InputShape = tuple[int, int, int]  # (channels, height, width)


def _mlp(num_classes: int, shape: InputShape, **args: Any) -> nn.Module:
    return MLP(math.prod(shape), num_classes, **args)


def _cnn(num_classes: int, shape: InputShape, **args: Any) -> nn.Module:
    return CNN(shape[0], num_classes, shape[1], **args)


def _cifar(name: str) -> Callable[..., nn.Module]:
    def build(num_classes: int, shape: InputShape, **args: Any) -> nn.Module:
        return CIFAR_MODELS[name](num_classes, shape[0], **args)

    return build


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": _mlp,
    "cnn": _cnn,
    **{name: _cifar(name) for name in CIFAR_MODELS},  # the CIFAR zoo of the distillation benchmarks
}
# Short names users type -> torchvision name; "{variant}" is filled from the spec's `variant`.
ALIASES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mobilenet_v3": ("mobilenet_v3_{variant}", "small", ("small", "large")),
}


def torchvision_names() -> list[str]:
    """Every torchvision classification model name."""
    return sorted(torchvision.models.list_models(module=torchvision.models))


def model_names() -> list[str]:
    """Names ``create_model`` accepts: built-ins, aliases, then torchvision's."""
    return [*MODELS, *ALIASES, *torchvision_names()]


def resolve_name(name: str, variant: str | None, key: str = "name", library: str | None = None) -> str:
    """The registry, torchvision or (``library="timm"``) timm name a spec refers to; raises for
    unknown names."""
    if library is not None:
        return _timm_name(name, key, library)
    if name in ALIASES:
        pattern, default, allowed = ALIASES[name]
        variant = variant or default
        if variant not in allowed:
            raise KdrunConfigError(
                f"{key.rsplit('.', 1)[0]}.variant", variant, f"allowed: {', '.join(allowed)}"
            )
        return pattern.format(variant=variant)
    if name in MODELS or name in torchvision_names():
        return name
    close = difflib.get_close_matches(name, model_names(), n=3)
    hint = f" (closest: {', '.join(close)})" if close else ""
    builtin = [n for n in MODELS if n not in CIFAR_MODELS]
    raise KdrunConfigError(
        key,
        name,
        f"allowed: {', '.join([*builtin, *ALIASES])}, a CIFAR zoo model (resnet20, resnet32x4, wrn_40_2, "
        "vgg13, ShuffleV2, ...), any torchvision classifier (`kdrun models` lists them), or a timm "
        f"model with `library: timm` (student=timm){hint}",
    )


def _timm_name(name: str, key: str, library: str) -> str:
    section = key.rsplit(".", 1)[0]
    if library != "timm":
        raise KdrunConfigError(
            f"{section}.library", library, "allowed: timm, or null (kdrun's and torchvision's)"
        )
    if find_spec("timm") is None:
        raise KdrunConfigError(f"{section}.library", library, "needs timm: pip install 'kdrun[timm]'")
    import timm

    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        hint = f"closest: {', '.join(close)}; " if close else ""
        raise KdrunConfigError(
            key, name, f"not a timm model ({hint}`kdrun models '*{name[:4]}*'` lists names)"
        )
    return name


def create_model(spec: Mapping[str, Any], num_classes: int, input_shape: InputShape) -> nn.Module:
    """Build the model a config spec names, for ``num_classes`` and inputs of ``input_shape``.

    ``spec`` keys: ``name``, ``variant`` (aliases only), ``library`` (``timm``: timm builds it, stem
    and head included; absent: kdrun's or torchvision's), ``args`` (constructor keywords),
    ``pretrained`` (torchvision or timm weights; needs internet once), ``bn_momentum`` (null keeps the
    architecture's own), ``channels_last`` (NHWC weights: 2.5x faster training on CPU for
    depthwise-conv nets, see docs/performance.md), ``stem`` (torchvision models: ``auto``, the
    default, ``imagenet`` or ``cifar``; see ``STEMS``).
    """
    library = spec.get("library")
    name = resolve_name(spec["name"], spec.get("variant"), library=library)
    args = dict(spec.get("args") or {})
    if library == "timm":
        import timm

        pretrained = bool(spec.get("pretrained"))
        model = timm.create_model(
            name, pretrained=pretrained, num_classes=num_classes, in_chans=input_shape[0], **args
        )
    elif name in MODELS:
        model = MODELS[name](num_classes, input_shape, **args)
    else:
        model = _torchvision_model(name, num_classes, input_shape[0], bool(spec.get("pretrained")), args)
        if effective_stem(name, spec.get("stem") or "auto", input_shape) == "cifar":
            _cifar_stem(model, name)
    if spec.get("bn_momentum") is not None:
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.momentum = float(spec["bn_momentum"])
    if spec.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    return model


STEMS = ("auto", "imagenet", "cifar")
# Below this input size ``stem: auto`` picks the small-input stem: an ImageNet stem (7x7 stride-2
# conv + max-pool, or a stride-2 first conv) shrinks a 32 px image to a 1x1 map before the last stage.
SMALL_INPUT = 64
_STEM_FAMILIES = {
    "resnet": ("resnet", "resnext", "wide_resnet"),  # conv1 -> 3x3 stride 1, no max-pool
    "densenet": ("densenet",),  # features.conv0 -> 3x3 stride 1, no features.pool0
    "shufflenet": ("shufflenet_v2",),  # conv1 stride 1, no max-pool
    "stride": ("mobilenet", "efficientnet", "regnet", "mnasnet"),  # first conv stride 1
}


def stem_family(name: str) -> str | None:
    """Which small-input stem a torchvision model name gets, or None if kdrun has none for it."""
    for family, prefixes in _STEM_FAMILIES.items():
        if name.startswith(prefixes):
            return family
    return None


def effective_stem(name: str, stem: str, input_shape: InputShape) -> str:
    """``auto`` -> ``cifar`` for inputs below ``SMALL_INPUT`` px when the model has a small-input
    stem, else ``imagenet``; explicit choices are kept."""
    if stem != "auto":
        return stem
    small = min(input_shape[1:]) < SMALL_INPUT
    return "cifar" if small and stem_family(name) is not None else "imagenet"


def _cifar_stem(model: nn.Module, name: str) -> None:
    """Replace the ImageNet stem by the small-input one (He et al. 2016's CIFAR ResNets; the CIFAR
    variants of MobileNet and EfficientNet keep the first conv at stride 1)."""
    family = stem_family(name)
    if family in ("resnet", "densenet"):
        resnet = family == "resnet"
        conv_path, pool_path = ("conv1", "maxpool") if resnet else ("features.conv0", "features.pool0")
        conv = model.get_submodule(conv_path)
        new = nn.Conv2d(conv.in_channels, conv.out_channels, 3, 1, 1, bias=conv.bias is not None)
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")  # torchvision's init
        model.set_submodule(conv_path, new)
        model.set_submodule(pool_path, nn.Identity())
        return
    if family == "shufflenet":
        model.set_submodule("maxpool", nn.Identity())
    if family is None:
        raise ValueError(f"no small-input stem for {name}")
    conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    conv.stride = (1, 1)


def _torchvision_model(
    name: str, num_classes: int, in_channels: int, pretrained: bool, args: dict[str, Any]
) -> nn.Module:
    if pretrained:
        model = torchvision.models.get_model(name, weights="DEFAULT", **args)
        _replace_last_linear(model, num_classes)
    else:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **args)
    if in_channels != 3:
        _adapt_first_conv(model, in_channels, pretrained)
    return model


def _replace_last_linear(model: nn.Module, num_classes: int) -> None:
    path, last = [(p, m) for p, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    model.set_submodule(path, nn.Linear(last.in_features, num_classes))


def _adapt_first_conv(model: nn.Module, in_channels: int, pretrained: bool) -> None:
    """Give the stem conv ``in_channels`` inputs, keeping its initialisation scheme.

    Pretrained RGB filters are summed over colour (a grey image replicated to RGB gives the same
    response); random filters are sliced/tiled so torchvision's own init is kept.
    """
    path, conv = next((p, m) for p, m in model.named_modules() if isinstance(m, nn.Conv2d))
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        conv.bias is not None,
    )
    with torch.no_grad():
        weight = conv.weight
        if pretrained:
            weight = weight.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
        else:
            weight = weight.repeat(1, math.ceil(in_channels / weight.shape[1]), 1, 1)[:, :in_channels]
        new.weight.copy_(weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    model.set_submodule(path, new)
