"""A ``teacher``/``student`` config section -> an untrained model sized for the data."""

from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun.data import TensorDataModule
from kdrun.models.factory import MODELS, create_model


def model_spec(section: DictConfig) -> dict[str, Any]:
    """The keys of a ``teacher``/``student`` section that define the architecture."""
    keys = ("name", "variant", "args", "pretrained", "bn_momentum", "channels_last")
    spec = {k: OmegaConf.to_container(section[k]) if k == "args" else section[k] for k in keys}
    if section.get("library"):  # only timm sections have it: other models' cache keys stay as they were
        spec["library"] = section.library
    elif section.name not in MODELS:  # torchvision: the stem is part of the architecture
        spec["stem"] = section.get("stem") or "auto"
    return spec


def build(section: DictConfig, data: TensorDataModule) -> nn.Module:
    """An untrained model for a ``teacher``/``student`` section, sized for ``data``."""
    return create_model(model_spec(section), data.num_classes, data.input_shape)
