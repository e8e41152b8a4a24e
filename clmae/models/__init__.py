"""Models: the timm encoder factory, the MAE decoder, the masking module and the pretraining wrapper.

This package knows architectures only; names of published weights are the weights registry's (:mod:`clmae.hub`).
"""

from ._registry import FMNIST_CFG, SMALL_RGB_CFG, ArchSpec, default_pretrained_cfg, get_arch, list_models
from .checks import check_input
from .config import METHOD_TITLES, METHODS, PretrainingConfig
from .decoder import MAEDecoder
from .factory import check_config, create_encoder, create_pretraining_model
from .masker import MaskingModule
from .masking import num_keep, random_masking, topk_masking
from .norm_eps import norm_eps, set_norm_eps
from .patches import patchify, unpatchify
from .pos_embed import sincos_2d
from .pretrainer import CLMAE

__all__ = [
    "CLMAE",
    "FMNIST_CFG",
    "METHODS",
    "METHOD_TITLES",
    "SMALL_RGB_CFG",
    "ArchSpec",
    "MAEDecoder",
    "MaskingModule",
    "PretrainingConfig",
    "check_config",
    "check_input",
    "create_encoder",
    "create_pretraining_model",
    "default_pretrained_cfg",
    "get_arch",
    "list_models",
    "norm_eps",
    "num_keep",
    "patchify",
    "random_masking",
    "set_norm_eps",
    "sincos_2d",
    "topk_masking",
    "unpatchify",
]
