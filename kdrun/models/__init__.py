"""Models by name: one factory over kdrun's small built-ins and torchvision's classifiers."""

from kdrun.models.checkpoint import load_weights, save_weights
from kdrun.models.factory import MODELS, create_model, model_names

__all__ = ["MODELS", "create_model", "load_weights", "model_names", "save_weights"]
