"""Training: the per-iteration step and its optimizers."""

from .step import autocast_for, build_optimizers, train_step

__all__ = ["autocast_for", "build_optimizers", "train_step"]
