"""Training: the per-iteration step and its optimizers, and the ``clmae train`` pretraining loop."""

from .._lazy import lazy_package

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

# Each name is imported from its module when first used (clmae._lazy), so that importing the package is cheap.
lazy_package(
    __name__,
    {
        "TrainConfig": ".config",
        "list_recipes": ".config",
        "load_recipe": ".config",
        "resolve_config": ".config",
        "autocast_for": ".step",
        "build_optimizers": ".step",
        "compile_in_place": ".step",
        "train_step": ".step",
        "train": ".trainer",
    },
)
