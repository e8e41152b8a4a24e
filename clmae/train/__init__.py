"""Training: the per-iteration step and its optimizers, and the ``clmae train`` pretraining loop."""

from typing import Any

from .config import TrainConfig, list_recipes, load_recipe, resolve_config
from .step import autocast_for, build_optimizers, train_step

__all__ = ["TrainConfig", "autocast_for", "build_optimizers", "list_recipes", "load_recipe", "resolve_config", "train",
           "train_step"]  # fmt: skip


def __getattr__(name: str) -> Any:
    # ``train`` (the loop) is imported on first use: it pulls in the data pipeline (torchvision).
    if name == "train":
        from .trainer import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
