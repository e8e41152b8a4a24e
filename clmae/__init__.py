"""clmae: Curriculum-Learned Masked Autoencoders (CL-MAE, Madan et al., WACV 2024) on timm Vision Transformers."""

from ._version import __version__
from .curriculum import curriculum_factor, curriculum_phase
from .factory import create_model
from .hub import (
    get_weight,
    list_pretrained,
    load_pretrained,
    load_pretraining,
    load_pretraining_model,
    push_to_hub,
    save_pretrained,
)
from .models import CLMAE, PretrainingConfig, check_input, create_pretraining_model, list_models
from .train import build_optimizers, train_step

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
