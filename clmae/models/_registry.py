"""The architectures clmae knows: each is a timm ``VisionTransformer`` configuration plus MAE decoder defaults."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any

from ..data.fashion_mnist import MEAN as FMNIST_MEAN
from ..data.fashion_mnist import STD as FMNIST_STD
from ..data.transforms.numbers import EVAL_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class ArchSpec:
    """One encoder architecture.

    Attributes:
        name: clmae's name; timm's own name where timm has the architecture.
        timm_arch: the timm architecture it is built from (``timm.create_model(timm_arch, **model_args)``).
        model_args: overrides of that timm architecture (image size, patch size, channels).
        description: one line for ``list_models``.
        decoder_embed_dim: default MAE decoder width.
        decoder_depth: default MAE decoder depth.
        decoder_num_heads: default MAE decoder heads.
        pretrained_cfg: overrides of timm's ``pretrained_cfg`` (input size, mean/std) for non-ImageNet inputs.
    """

    name: str
    timm_arch: str
    model_args: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)

    def full_pretrained_cfg(self) -> dict[str, Any]:
        """The architecture's complete timm ``pretrained_cfg``: preprocessing only, no weight URL."""
        return {**default_pretrained_cfg(self.timm_arch), **self.pretrained_cfg}


# Preprocessing of the small-image models: whole image, no crop. 28 px: Fashion-MNIST training-split mean/std of
# pixel values in [0, 1]; 32 px: ImageNet's mean/std (timm's default). Raw-pixel evaluation uses the same values.
FMNIST_CFG = {
    "input_size": (1, 28, 28),
    "mean": (FMNIST_MEAN,),
    "std": (FMNIST_STD,),
    "crop_pct": 1.0,
    "interpolation": "bilinear",
}
SMALL_RGB_CFG = {"input_size": (3, 32, 32), "crop_pct": 1.0, "interpolation": "bicubic"}


def _spec(name: str, timm_arch: str, description: str, **kwargs: Any) -> ArchSpec:
    return ArchSpec(name=name, timm_arch=timm_arch, description=description, **kwargs)


# ImageNet-size models use MAE's decoder (512 wide, 8 blocks, 16 heads). The small-image models use a light decoder
# (128 wide, 4 blocks, 4 heads) so that they train on a CPU; their encoders keep the timm ViT-T/S widths and depths.
_SMALL_DECODER = {"decoder_embed_dim": 128, "decoder_depth": 4, "decoder_num_heads": 4}
_ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in [
        _spec("vit_tiny_patch16_224", "vit_tiny_patch16_224", "ViT-T/16, 224 px, RGB"),
        _spec("vit_small_patch16_224", "vit_small_patch16_224", "ViT-S/16, 224 px, RGB"),
        _spec("vit_base_patch16_224", "vit_base_patch16_224", "ViT-B/16, 224 px, RGB"),
        _spec("vit_large_patch16_224", "vit_large_patch16_224", "ViT-L/16, 224 px, RGB"),
        _spec("vit_huge_patch14_224", "vit_huge_patch14_224", "ViT-H/14, 224 px, RGB"),
        _spec(
            "vit_tiny_patch4_28",
            "vit_tiny_patch16_224",
            "ViT-T/4, 28 px, 1 channel (Fashion-MNIST, MNIST)",
            model_args={"img_size": 28, "patch_size": 4, "in_chans": 1},
            pretrained_cfg=FMNIST_CFG,
            **_SMALL_DECODER,
        ),
        _spec(
            "vit_small_patch4_28",
            "vit_small_patch16_224",
            "ViT-S/4, 28 px, 1 channel (Fashion-MNIST, MNIST)",
            model_args={"img_size": 28, "patch_size": 4, "in_chans": 1},
            pretrained_cfg=FMNIST_CFG,
            **_SMALL_DECODER,
        ),
        _spec(
            "vit_tiny_patch4_32",
            "vit_tiny_patch16_224",
            "ViT-T/4, 32 px, RGB (CIFAR-size)",
            model_args={"img_size": 32, "patch_size": 4},
            pretrained_cfg=SMALL_RGB_CFG,
            **_SMALL_DECODER,
        ),
        _spec(
            "vit_small_patch4_32",
            "vit_small_patch16_224",
            "ViT-S/4, 32 px, RGB (CIFAR-size)",
            model_args={"img_size": 32, "patch_size": 4},
            pretrained_cfg=SMALL_RGB_CFG,
            **_SMALL_DECODER,
        ),
    ]
}


def default_pretrained_cfg(timm_arch: str) -> dict[str, Any]:
    """timm's ``pretrained_cfg`` keys for an encoder with ImageNet preprocessing (MAE's evaluation: resize 256,
    center-crop 224) and no weight URL: the base every clmae architecture's preprocessing overrides."""
    return {
        "architecture": timm_arch,
        "input_size": (3, 224, 224),
        "fixed_input_size": True,
        "interpolation": "bicubic",
        "crop_pct": EVAL_CROP_PCT,
        "crop_mode": "center",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "num_classes": 0,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }


def list_models(pattern: str = "*") -> list[str]:
    """Sorted architecture names matching a shell-style ``pattern`` (e.g. ``"*patch4*"``)."""
    return sorted(name for name in _ARCHS if fnmatch.fnmatchcase(name, pattern))


def get_arch(name: str) -> ArchSpec:
    """The :class:`ArchSpec` called ``name``; a ``ValueError`` that suggests close names otherwise."""
    if not isinstance(name, str):
        raise ValueError(f"model name must be a string, got {type(name).__name__}")
    try:
        return _ARCHS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_ARCHS), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"Unknown model {name!r}.{hint} Available architectures: {', '.join(list_models())} "
            "(see clmae.list_models())."
        ) from None
