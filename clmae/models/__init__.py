"""Models: the timm encoder factory, the MAE decoder, the masking module and the pretraining wrapper."""

from ._registry import ArchSpec, get_arch, list_models
from .decoder import MAEDecoder
from .factory import create_model, create_pretraining_model
from .masker import MaskingModule
from .masking import num_keep, random_masking, topk_masking
from .patches import patchify, unpatchify
from .pos_embed import sincos_2d
from .pretrainer import CLMAE

__all__ = [
    "CLMAE",
    "ArchSpec",
    "MAEDecoder",
    "MaskingModule",
    "create_model",
    "create_pretraining_model",
    "get_arch",
    "list_models",
    "num_keep",
    "patchify",
    "random_masking",
    "sincos_2d",
    "topk_masking",
    "unpatchify",
]
