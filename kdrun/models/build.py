"""A ``teacher``/``student`` config section -> an untrained model sized for the data."""

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from torch import nn

from kdrun.config.schema import MISSING, choice, number
from kdrun.data import TensorDataModule
from kdrun.models.factory import MODELS, create_model


@dataclass
class ModelOptions:
    """A ``teacher``/``student`` section: a ``model/*.yaml`` config plus its role's keys."""

    name: str = MISSING  # kdrun's, torchvision's or (with library: timm) timm's model name
    variant: Any = MISSING
    args: Any = MISSING  # the model's own keyword arguments
    pretrained: bool = choice(MISSING, True, False)
    channels_last: bool = choice(MISSING, True, False)
    bn_momentum: Any = number(MISSING, gt=0, le=1, optional=True)
    library: Any = MISSING
    stem: Any = MISSING  # torchvision models: how the stem meets small inputs
    epochs: int = number(MISSING, ge=1, integer=True)
    seed: Any = MISSING  # teacher.seed: checked by kdrun.train.validate; the student's is the top-level seed
    precision: Any = MISSING  # teacher only: its trainer.precision (checked by kdrun.train.validate)
    checkpoint: Any = MISSING  # teacher only
    members: Any = MISSING  # teacher=ensemble only: k, the architecture, the member checkpoints
    model: Any = MISSING
    checkpoints: Any = MISSING


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
