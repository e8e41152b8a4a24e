"""clmae: Curriculum-Learned Masked Autoencoders (CL-MAE, Madan et al., WACV 2024) on timm Vision Transformers."""

from ._lazy import lazy_package
from ._version import __version__

__all__ = [
    "CLMAE",
    "PretrainingConfig",
    "__version__",
    "build_optimizers",
    "check_input",
    "create_model",
    "create_pretraining_model",
    "curriculum_factor",
    "curriculum_phase",
    "get_weight",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "load_pretraining",
    "load_pretraining_model",
    "push_to_hub",
    "save_pretrained",
    "train_step",
]

# Each name is imported from its module when first used (clmae._lazy), so that importing the package is cheap.
lazy_package(
    __name__,
    {
        "curriculum_factor": ".curriculum",
        "curriculum_phase": ".curriculum",
        "create_model": ".factory",
        "get_weight": ".hub",
        "list_pretrained": ".hub",
        "load_pretrained": ".hub",
        "load_pretraining": ".hub",
        "load_pretraining_model": ".hub",
        "push_to_hub": ".hub",
        "save_pretrained": ".hub",
        "CLMAE": ".models",
        "PretrainingConfig": ".models",
        "check_input": ".models",
        "create_pretraining_model": ".models",
        "list_models": ".models",
        "build_optimizers": ".train",
        "train_step": ".train",
    },
)
