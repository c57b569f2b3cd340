"""The CIFAR model zoo of the distillation benchmarks (RepDistiller, mdistiller): architectures
and module names as the references', so their published ``.pth`` state dicts load.

Every model takes ``in_channels`` (3 for the published checkpoints; 1 for grey data sets) and any
input size from 28 px up: the references' fixed-size final pools are a global mean here,
identical on 32 px inputs.
"""

from collections.abc import Callable

from torch import nn

from kdrun.models.cifar.mobilenetv2 import MobileNetV2
from kdrun.models.cifar.resnet import RESNETS, ResNet
from kdrun.models.cifar.shufflenet import ShuffleNetV1, ShuffleNetV2
from kdrun.models.cifar.vgg import CONFIGS, VGG
from kdrun.models.cifar.wrn import WRNS, WideResNet


def _builders() -> dict[str, Callable[..., nn.Module]]:
    zoo: dict[str, Callable[..., nn.Module]] = {}
    for name, (depth, filters) in RESNETS.items():
        zoo[name] = lambda c, k, d=depth, f=filters, **a: ResNet(d, f, num_classes=c, in_channels=k, **a)
    for name, (depth, widen) in WRNS.items():
        zoo[name] = lambda c, k, d=depth, w=widen, **a: WideResNet(d, w, num_classes=c, in_channels=k, **a)
    for name, config in CONFIGS.items():
        zoo[name] = lambda c, k, cfg=config, **a: VGG(cfg, num_classes=c, in_channels=k, **a)
    zoo["MobileNetV2"] = lambda c, k, **a: MobileNetV2(num_classes=c, in_channels=k, **a)
    zoo["ShuffleV1"] = lambda c, k, **a: ShuffleNetV1(num_classes=c, in_channels=k, **a)
    zoo["ShuffleV2"] = lambda c, k, **a: ShuffleNetV2(num_classes=c, in_channels=k, **a)
    return zoo


CIFAR_MODELS = _builders()  # name -> (num_classes, in_channels, **constructor args) -> model

__all__ = ["CIFAR_MODELS", "VGG", "MobileNetV2", "ResNet", "ShuffleNetV1", "ShuffleNetV2", "WideResNet"]
