"""Training: the per-iteration step and its optimizers, and the ``clmae train`` pretraining loop."""

from .config import TrainConfig, list_recipes, load_recipe, resolve_config
from .step import autocast_for, build_optimizers, compile_in_place, train_step
from .trainer import train

__all__ = [
    "TrainConfig",
    "autocast_for",
    "build_optimizers",
    "compile_in_place",
    "list_recipes",
    "load_recipe",
    "resolve_config",
    "train",
    "train_step",
]
