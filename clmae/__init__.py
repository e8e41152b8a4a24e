"""clmae: Curriculum-Learned Masked Autoencoders (CL-MAE, Madan et al., WACV 2024) on timm Vision Transformers."""

from .curriculum import curriculum_factor, curriculum_phase
from .hub import list_pretrained, load_pretrained, load_pretraining, push_to_hub, save_pretrained
from .models import CLMAE, create_model, create_pretraining_model, list_models
from .train import build_optimizers, train_step

__version__ = "0.1.0"

__all__ = [
    "CLMAE",
    "__version__",
    "build_optimizers",
    "create_model",
    "create_pretraining_model",
    "curriculum_factor",
    "curriculum_phase",
    "list_models",
    "list_pretrained",
    "load_pretrained",
    "load_pretraining",
    "push_to_hub",
    "save_pretrained",
    "train_step",
]
