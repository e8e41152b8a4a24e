"""``create_model`` (a plain timm encoder) and ``create_pretraining_model`` (encoder + decoder + masking module)."""

from __future__ import annotations

from typing import Any

import timm
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from . import losses
from ._registry import ArchSpec, get_arch
from .decoder import MAEDecoder
from .masker import MaskingModule
from .pos_embed import sincos_2d
from .pretrainer import CLMAE

METHODS = ("clmae", "mae")


def _set_sincos(encoder: VisionTransformer) -> None:
    grid = encoder.patch_embed.grid_size
    if grid[0] != grid[1]:
        raise ValueError(f"clmae models need a square patch grid, got {grid}")
    with torch.no_grad():
        encoder.pos_embed.copy_(sincos_2d(encoder.embed_dim, grid[0], cls_token=True)[None])


def _pretrained_cfg(spec: ArchSpec) -> dict[str, Any]:
    """A clean timm ``pretrained_cfg`` (preprocessing only, no weight URL of timm's default tag)."""
    cfg = {
        "architecture": spec.timm_arch,
        "input_size": (3, 224, 224),
        "fixed_input_size": True,
        "interpolation": "bicubic",
        "crop_pct": 0.875,  # MAE's evaluation: resize 256, center-crop 224
        "crop_mode": "center",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "num_classes": 0,
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }
    cfg.update(spec.pretrained_cfg)
    return cfg


def create_model(name: str, pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Create an encoder: a plain ``timm`` ``VisionTransformer`` with no classifier head (``num_classes=0``).

    Positions are MAE's fixed 2-D sin-cos values (left trainable, as timm's are, for fine-tuning). Fine-tune it with
    timm as any other timm model, e.g. ``model.reset_classifier(10)``.

    Args:
        name: an architecture from :func:`clmae.list_models`, or with ``pretrained=True`` any name
            :func:`clmae.load_pretrained` accepts (registry name or alias, ``arch.tag``, ``hf-hub:...``, a folder).
        pretrained: load published weights through :func:`clmae.load_pretrained` (pinned, sha256-verified).
        **kwargs: timm ``VisionTransformer`` arguments that override the architecture's (``num_classes``,
            ``drop_path_rate``, ``img_size``, ``global_pool``, ...).

    Returns:
        The timm ``VisionTransformer``.
    """
    if pretrained:
        # Published weights (registry names and aliases, arch.tag, hf-hub:org/repo[@rev], local-dir:/path, folders)
        # all load through clmae.hub, pinned and checksum-verified where the registry pins them.
        from ..hub import load_pretrained

        return load_pretrained(name, **kwargs)
    spec = get_arch(name)
    args = {**spec.model_args, "num_classes": 0, **kwargs}
    args.setdefault("pretrained_cfg", _pretrained_cfg(spec))
    model = timm.create_model(spec.timm_arch, pretrained=False, **args)
    # Keep the advertised input size true when img_size / in_chans were overridden.
    model.pretrained_cfg["input_size"] = (model.patch_embed.proj.in_channels, *model.patch_embed.img_size)
    _set_sincos(model)
    return model


def _init_mae(model: CLMAE) -> None:
    """MAE's initialisation (``models_mae.initialize_weights``) for the encoder and decoder."""
    for m in [model.encoder, model.decoder]:
        for sub in m.modules():
            if isinstance(sub, nn.Linear):
                nn.init.xavier_uniform_(sub.weight)
                if sub.bias is not None:
                    nn.init.zeros_(sub.bias)
            elif isinstance(sub, nn.LayerNorm):
                nn.init.ones_(sub.weight)
                nn.init.zeros_(sub.bias)
    # Patch embedding initialised like a Linear layer, not a convolution (MAE).
    w = model.encoder.patch_embed.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.normal_(model.encoder.cls_token, std=0.02)
    nn.init.normal_(model.decoder.mask_token, std=0.02)


def create_pretraining_model(
    name: str,
    method: str = "clmae",
    *,
    mask_ratio: float = 0.75,
    norm_pix_loss: bool = False,
    decoder_embed_dim: int | None = None,
    decoder_depth: int | None = None,
    decoder_num_heads: int | None = None,
    masker_depth: int = 5,
    masker_num_heads: int = 4,
    masker_mlp_ratio: float = 4.0,
    masker_norm_eps: float = 1e-5,
    gauss_sigma: float = losses.GAUSS_SIGMA,
    gauss_weight: float = losses.GAUSS_WEIGHT,
    kl_weight: float = losses.KL_WEIGHT,
    kl_batch_scale: float = losses.KL_BATCH_SCALE,
    div_weight: float = losses.DIV_WEIGHT,
    div_scale: float = losses.DIV_SCALE,
    **kwargs: Any,
) -> CLMAE:
    """Create a CL-MAE (or MAE baseline) pretraining model, initialised as MAE.

    Args:
        name: an architecture from :func:`clmae.list_models`.
        method: ``"clmae"`` (learned curriculum masks) or ``"mae"`` (uniform random masks; ``masker`` is ``None``).
        mask_ratio: fraction of patches hidden in the MAE step; the masking module's KL target keeps
            ``1 - mask_ratio``.
        norm_pix_loss: per-patch normalised pixel targets.
        decoder_embed_dim: decoder width (default: the architecture's, 512 for the ImageNet models).
        decoder_depth: decoder blocks (default: the architecture's, 8 for the ImageNet models).
        decoder_num_heads: decoder heads (default: the architecture's, 16 for the ImageNet models).
        masker_depth: masking-module blocks (reference: 5).
        masker_num_heads: masking-module heads (reference: 4).
        masker_mlp_ratio: masking-module MLP ratio (reference: 4).
        masker_norm_eps: masking-module LayerNorm epsilon (reference: 1e-5).
        gauss_sigma: Gaussian term width (reference: 0.12).
        gauss_weight: Gaussian term weight (reference: 1.0).
        kl_weight: KL term weight (reference: 0.1).
        kl_batch_scale: KL batch mean multiplier (reference: per-GPU batch 256, summed).
        div_weight: diversity term weight (reference: 2.0).
        div_scale: diversity distance scale (reference: 0.1).
        **kwargs: encoder overrides, as for :func:`create_model` (e.g. ``embed_dim``, ``depth``, ``img_size``).

    Returns:
        A :class:`~clmae.models.pretrainer.CLMAE`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    # Checked before anything is built (CLMAE checks the resulting K too).
    if not isinstance(mask_ratio, (int, float)) or not 0.0 < float(mask_ratio) < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
    spec = get_arch(name)
    encoder = create_model(name, **kwargs)
    p = encoder.patch_embed.patch_size[0]
    decoder_embed_dim = decoder_embed_dim or spec.decoder_embed_dim
    decoder_depth = spec.decoder_depth if decoder_depth is None else decoder_depth
    decoder_num_heads = decoder_num_heads or spec.decoder_num_heads
    decoder = MAEDecoder(
        num_patches=encoder.patch_embed.num_patches,
        embed_dim=encoder.embed_dim,
        decoder_embed_dim=decoder_embed_dim,
        depth=decoder_depth,
        num_heads=decoder_num_heads,
        patch_size=p,
        in_chans=encoder.patch_embed.proj.in_channels,
    )
    masker = None
    if method == "clmae":
        masker = MaskingModule(
            encoder.patch_embed.num_patches,
            encoder.embed_dim,
            depth=masker_depth,
            num_heads=masker_num_heads,
            mlp_ratio=masker_mlp_ratio,
            norm_eps=masker_norm_eps,
        )
    model = CLMAE(
        encoder,
        decoder,
        masker,
        mask_ratio=mask_ratio,
        norm_pix_loss=norm_pix_loss,
        gauss_sigma=gauss_sigma,
        gauss_weight=gauss_weight,
        kl_weight=kl_weight,
        kl_batch_scale=kl_batch_scale,
        div_weight=div_weight,
        div_scale=div_scale,
    )
    _init_mae(model)
    # Fixed positions: MAE keeps them out of training.
    model.encoder.pos_embed.requires_grad_(False)
    # Everything needed to rebuild this exact model: create_pretraining_model(**model.config).
    model.config = {
        "name": name,
        "method": method,
        "mask_ratio": mask_ratio,
        "norm_pix_loss": norm_pix_loss,
        "decoder_embed_dim": decoder_embed_dim,
        "decoder_depth": decoder_depth,
        "decoder_num_heads": decoder_num_heads,
        "masker_depth": masker_depth,
        "masker_num_heads": masker_num_heads,
        "masker_mlp_ratio": masker_mlp_ratio,
        "masker_norm_eps": masker_norm_eps,
        "gauss_sigma": gauss_sigma,
        "gauss_weight": gauss_weight,
        "kl_weight": kl_weight,
        "kl_batch_scale": kl_batch_scale,
        "div_weight": div_weight,
        "div_scale": div_scale,
        **kwargs,
    }
    return model
