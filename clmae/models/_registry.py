"""The architectures clmae knows: each is a timm ``VisionTransformer`` configuration plus MAE decoder defaults."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ArchSpec:
    """One encoder architecture.

    Attributes:
        name: clmae's name; timm's own name where timm has the architecture.
        timm_arch: the timm architecture it is built from (``timm.create_model(timm_arch, **model_args)``).
        model_args: overrides of that timm architecture (image size, patch size, channels).
        decoder_embed_dim: default MAE decoder width.
        decoder_depth: default MAE decoder depth.
        decoder_num_heads: default MAE decoder heads.
        description: one line for ``list_models``.
        pretrained_cfg: overrides of timm's ``pretrained_cfg`` (input size, mean/std) for non-ImageNet inputs.
    """

    name: str
    timm_arch: str
    model_args: dict[str, Any] = field(default_factory=dict)
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    description: str = ""
    pretrained_cfg: dict[str, Any] = field(default_factory=dict)


# Preprocessing of the small-image models: whole image, no crop. 28 px: Fashion-MNIST training-split mean/std of
# pixel values in [0, 1]; 32 px: ImageNet's mean/std (timm's default).
_CFG_28 = {"input_size": (1, 28, 28), "mean": (0.2860,), "std": (0.3530,), "crop_pct": 1.0, "interpolation": "bilinear"}
_CFG_32 = {"input_size": (3, 32, 32), "crop_pct": 1.0, "interpolation": "bicubic"}

# ImageNet-size models use MAE's decoder (512 wide, 8 blocks, 16 heads). The small-image models use a light decoder
# (128 wide, 4 blocks, 4 heads) so that they train on a CPU; their encoders keep the timm ViT-T/S widths and depths.
_ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in [
        ArchSpec("vit_tiny_patch16_224", "vit_tiny_patch16_224", description="ViT-T/16, 224 px, RGB"),
        ArchSpec("vit_small_patch16_224", "vit_small_patch16_224", description="ViT-S/16, 224 px, RGB"),
        ArchSpec("vit_base_patch16_224", "vit_base_patch16_224", description="ViT-B/16, 224 px, RGB"),
        ArchSpec("vit_large_patch16_224", "vit_large_patch16_224", description="ViT-L/16, 224 px, RGB"),
        ArchSpec("vit_huge_patch14_224", "vit_huge_patch14_224", description="ViT-H/14, 224 px, RGB"),
        ArchSpec(
            "vit_tiny_patch4_28",
            "vit_tiny_patch16_224",
            {"img_size": 28, "patch_size": 4, "in_chans": 1},
            128,
            4,
            4,
            "ViT-T/4, 28 px, 1 channel (Fashion-MNIST, MNIST)",
            _CFG_28,
        ),
        ArchSpec(
            "vit_small_patch4_28",
            "vit_small_patch16_224",
            {"img_size": 28, "patch_size": 4, "in_chans": 1},
            128,
            4,
            4,
            "ViT-S/4, 28 px, 1 channel (Fashion-MNIST, MNIST)",
            _CFG_28,
        ),
        ArchSpec(
            "vit_tiny_patch4_32",
            "vit_tiny_patch16_224",
            {"img_size": 32, "patch_size": 4},
            128,
            4,
            4,
            "ViT-T/4, 32 px, RGB (CIFAR-size)",
            _CFG_32,
        ),
        ArchSpec(
            "vit_small_patch4_32",
            "vit_small_patch16_224",
            {"img_size": 32, "patch_size": 4},
            128,
            4,
            4,
            "ViT-S/4, 32 px, RGB (CIFAR-size)",
            _CFG_32,
        ),
    ]
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
