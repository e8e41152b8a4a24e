"""Models: the timm encoder factory, the MAE decoder, the masking module and the pretraining wrapper.

This package knows architectures only; names of published weights are the weights registry's (:mod:`clmae.hub`).
"""

from .._lazy import lazy_package

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

# Each name is imported from its module when first used (clmae._lazy), so that importing the package is cheap.
lazy_package(
    __name__,
    {
        "FMNIST_CFG": "._registry",
        "SMALL_RGB_CFG": "._registry",
        "ArchSpec": "._registry",
        "default_pretrained_cfg": "._registry",
        "get_arch": "._registry",
        "list_models": "._registry",
        "check_input": ".checks",
        "METHOD_TITLES": ".methods",
        "METHODS": ".methods",
        "PretrainingConfig": ".config",
        "MAEDecoder": ".decoder",
        "check_config": ".factory",
        "create_encoder": ".factory",
        "create_pretraining_model": ".factory",
        "MaskingModule": ".masker",
        "num_keep": ".masking",
        "random_masking": ".masking",
        "topk_masking": ".masking",
        "norm_eps": ".norm_eps",
        "set_norm_eps": ".norm_eps",
        "patchify": ".patches",
        "unpatchify": ".patches",
        "sincos_2d": ".pos_embed",
        "CLMAE": ".pretrainer",
    },
)
