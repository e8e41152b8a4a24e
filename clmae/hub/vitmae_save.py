"""clmae weights as a Hugging Face ``transformers`` ViTMAE folder (``config.json``, ``model.safetensors``,
``preprocessor_config.json``) that ``ViTMAEModel`` / ``ViTMAEForPreTraining`` and ``AutoImageProcessor`` load.

The folder's config sets ``mask_ratio`` to 0.0, so that ``ViTMAEModel`` returns features of every patch (ViTMAE masks
at every forward otherwise); ``from_pretrained(folder, mask_ratio=0.75)`` switches masking back on. The training mask
ratio is kept under ``clmae.mask_ratio``. Writing needs no ``transformers``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .._atomic import check_target, owned_folder, write_folder, write_text
from .._files import CONFIG_NAME, WEIGHTS_NAME
from .._safetensors import check_finite, weights_metadata, write_safetensors
from .._version import __version__
from ..data.transforms.numbers import fit_channels
from ..models import CLMAE, norm_eps
from ..models.norm_eps import TIMM_NORM_EPS
from .load import adapt_input_conv, load_pretrained, load_pretraining_model
from .vitmae import MODEL_TYPE, PREPROCESSOR_NAME
from .vitmae_map import to_vitmae_state

# timm's interpolation names -> PIL's resampling codes (transformers' ``resample``).
# The files of a transformers ViTMAE folder that clmae writes.
VITMAE_FOLDER_FILES = frozenset({CONFIG_NAME, WEIGHTS_NAME, PREPROCESSOR_NAME})


def is_vitmae_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a ViTMAE folder written by clmae (only its files, and a ``config.json`` of model type
    ``vit_mae`` with a ``clmae`` section): one that ``clmae export --format transformers`` may replace."""
    return owned_folder(
        folder, VITMAE_FOLDER_FILES, lambda c: c.get("model_type") == MODEL_TYPE and isinstance(c.get("clmae"), dict)
    )


def save_vitmae_folder(
    model: nn.Module,
    folder: str | os.PathLike,
    *,
    decoder: bool = True,
    in_chans: int | None = None,
    overwrite: bool = False,
) -> Path:
    """:func:`save_vitmae` as the commands write it: whole or not at all (built beside ``folder``, then swapped in);
    a ``folder`` holding anything but an earlier clmae ViTMAE export is refused unless ``overwrite``."""
    check_target(folder, is_vitmae_folder, "a transformers ViTMAE folder written by clmae", overwrite=overwrite)
    return write_folder(
        folder, lambda tmp: save_vitmae(model, tmp, decoder=decoder, in_chans=in_chans), what="ViTMAE folder"
    )


_RESAMPLE = {"nearest": 0, "lanczos": 1, "bilinear": 2, "bicubic": 3, "box": 4, "hamming": 5}


def _refuse(what: str) -> ValueError:
    return ValueError(f"this encoder cannot be written as a transformers ViTMAE model: {what}")


def _encoder_config(encoder: VisionTransformer) -> dict[str, Any]:
    """ViTMAE ``config.json`` keys of the encoder, after checking that ViTMAE has exactly its layout."""
    block = encoder.blocks[0] if len(encoder.blocks) else None
    if block is None:
        raise _refuse("it has no blocks")
    if encoder.cls_token is None or encoder.num_prefix_tokens != 1 or getattr(encoder, "no_embed_class", False):
        raise _refuse("ViTMAE has one class token with a position and no register tokens")
    if getattr(encoder, "dynamic_img_size", False) or encoder.pos_embed is None:
        raise _refuse("ViTMAE has learned-size absolute positions (dynamic_img_size=False)")
    checks = {
        "pre_norm": not isinstance(encoder.norm_pre, nn.Identity),
        "fc_norm / global_pool='avg' (no final norm on the tokens)": isinstance(encoder.norm, nn.Identity),
        "layer scale (init_values)": not isinstance(getattr(block, "ls1", nn.Identity()), nn.Identity),
        "qk_norm": not isinstance(getattr(block.attn, "q_norm", nn.Identity()), nn.Identity),
        "patch embedding without bias": encoder.patch_embed.proj.bias is None,
        "an activation other than GELU": not isinstance(block.mlp.act, nn.GELU)
        or getattr(block.mlp.act, "approximate", "none") != "none",
        "a classifier head": not isinstance(encoder.head, nn.Identity),
    }
    bad = [name for name, present in checks.items() if present]
    if bad:
        raise _refuse(", ".join(bad))
    height, width = encoder.patch_embed.img_size
    patch = encoder.patch_embed.patch_size
    if patch[0] != patch[1]:
        raise _refuse(f"patch size {patch} is not square")
    eps = norm_eps(encoder)
    return {
        "hidden_size": encoder.embed_dim,
        "num_hidden_layers": len(encoder.blocks),
        "num_attention_heads": block.attn.num_heads,
        "intermediate_size": block.mlp.fc1.out_features,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02,
        "layer_norm_eps": TIMM_NORM_EPS if eps is None else eps,
        "image_size": height if height == width else [height, width],
        "patch_size": patch[0],
        "num_channels": encoder.patch_embed.proj.in_channels,
        "qkv_bias": block.attn.qkv.bias is not None,
    }


def _decoder_config(model: CLMAE, eps: float) -> dict[str, Any]:
    dec = model.decoder
    width = dec.embed.out_features
    if norm_eps(dec) != eps:
        raise _refuse(f"its decoder's LayerNorm epsilon {norm_eps(dec)} differs from the encoder's {eps}")
    if len(dec.blocks) and dec.blocks[0].mlp.fc1.out_features != 4 * width:
        raise _refuse("ViTMAE's decoder MLP is 4 x its width")
    return {
        "decoder_hidden_size": width,
        "decoder_num_hidden_layers": len(dec.blocks),
        "decoder_num_attention_heads": dec.blocks[0].attn.num_heads if len(dec.blocks) else 16,
        "decoder_intermediate_size": 4 * width,
        "norm_pix_loss": model.norm_pix_loss,
    }


def image_processor_config(encoder: VisionTransformer, in_chans: int | None = None) -> dict[str, Any]:
    """``preprocessor_config.json`` whose image processor does what timm's eval transform does with the encoder's
    ``pretrained_cfg``: resize the short side to ``size / crop_pct``, crop the centre, scale to [0, 1], normalise.

    ``BitImageProcessor`` has exactly these steps; a 1-channel model gets ``do_convert_rgb: false`` and takes
    greyscale (mode ``"L"``) images, as timm's transform does.

    Args:
        encoder: the timm encoder whose ``pretrained_cfg`` is described.
        in_chans: channels of the exported model when its input stem is adapted (:func:`save_vitmae`): the mean
            and std are fitted to them (one value repeated, or the channels' average).

    Raises:
        ValueError: preprocessing that no transformers image processor reproduces (timm's ``crop_mode="border"``).
    """
    cfg = dict(getattr(encoder, "pretrained_cfg", None) or {})
    channels = encoder.patch_embed.proj.in_channels
    height, width = encoder.patch_embed.img_size
    mean, std = list(cfg.get("mean", (0.5,) * channels)), list(cfg.get("std", (0.5,) * channels))
    if len(mean) != channels or len(std) != channels:
        raise _refuse(f"its preprocessing has mean {mean} and std {std} for {channels} channel(s)")
    if in_chans is not None and in_chans != channels:
        mean, std = list(fit_channels(mean, in_chans)), list(fit_channels(std, in_chans))
        channels = in_chans
    crop_pct = cfg.get("crop_pct") or 1.0
    mode = cfg.get("crop_mode") or "center"
    interpolation = cfg.get("interpolation") or "bicubic"
    if interpolation not in _RESAMPLE:
        raise _refuse(f"interpolation {interpolation!r} has no PIL resampling code")
    out: dict[str, Any] = {
        "image_processor_type": "BitImageProcessor",
        "do_resize": True,
        "resample": _RESAMPLE[interpolation],
        "do_center_crop": True,
        "crop_size": {"height": height, "width": width},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": mean,
        "image_std": std,
        "do_convert_rgb": channels == 3,
    }
    if mode == "squash":  # timm resizes the whole image to the input size
        out.update(size={"height": height, "width": width}, do_center_crop=False)
        out.pop("crop_size")
    elif mode == "center":  # timm: short side to floor(size / crop_pct), centre crop (transforms_factory.py)
        out["size"] = {"shortest_edge": math.floor(min(height, width) / crop_pct)}
    else:
        raise _refuse(f"timm's crop_mode={mode!r} has no transformers image processor")
    return out


def _check_in_chans(in_chans: int | None, channels: int, with_decoder: bool) -> int:
    """The exported model's input channels: the encoder's, or ``in_chans`` (1 or 3) for the encoder alone."""
    if in_chans is None or in_chans == channels:
        return channels
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans must be 1 (greyscale) or 3 (RGB), the channels of an image file; got {in_chans}")
    if with_decoder:
        raise ValueError(
            f"the decoder reconstructs the weights' own {channels} channel(s): export in_chans={in_chans} with the "
            "encoder alone (without --decoder / decoder=False)"
        )
    return in_chans


def save_vitmae(
    model: nn.Module, folder: str | os.PathLike, *, decoder: bool = True, in_chans: int | None = None
) -> Path:
    """Write ``model`` as a ``transformers`` ViTMAE folder.

    Args:
        model: a timm ``VisionTransformer`` (gives a ``ViTMAEModel`` folder) or a :class:`~clmae.models.CLMAE`
            (a ``ViTMAEForPreTraining`` folder with its decoder; the masking module has no place in ViTMAE and is
            left out).
        folder: output folder (created; files of the same names are replaced).
        decoder: with a ``CLMAE``, write the decoder too (``False``: the encoder alone, as ``ViTMAEModel``).
        in_chans: input channels of the exported encoder (1 or 3; default: the encoder's). A 1-channel encoder
            exported with ``in_chans=3`` takes RGB images, as ``transformers`` pipelines give them: its patch
            embedding is adapted as timm adapts pretrained weights (``adapt_input_conv``: the weights repeated and
            divided by 3) and the mean/std repeated, so that a greyscale image given as RGB has the same features.

    Returns:
        The folder.

    Raises:
        ValueError: anything ViTMAE cannot hold exactly, named (layer scale, ``avg`` pooling, ...); nothing is
            written then.
    """
    pretraining = model if isinstance(model, CLMAE) else None
    encoder = pretraining.encoder if pretraining is not None else model
    if not isinstance(encoder, VisionTransformer):
        raise ValueError(f"save_vitmae takes a timm VisionTransformer or a CLMAE, got {type(model).__name__}")
    config = _encoder_config(encoder)
    mask_ratio = pretraining.mask_ratio if pretraining is not None else 0.75
    with_decoder = decoder and pretraining is not None
    if with_decoder:
        config.update(_decoder_config(pretraining, config["layer_norm_eps"]))
    channels = config["num_channels"]
    config["num_channels"] = in_chans = _check_in_chans(in_chans, channels, with_decoder)
    config.update(
        architectures=["ViTMAEForPreTraining" if with_decoder else "ViTMAEModel"],
        model_type=MODEL_TYPE,
        mask_ratio=0.0,  # unmasked features; from_pretrained(folder, mask_ratio=0.75) masks again
        dtype="float32",
        clmae={"version": __version__, "mask_ratio": mask_ratio, "source": encoder.pretrained_cfg.get("source")},
    )
    enc_state = dict(encoder.state_dict())
    if in_chans != channels:
        weight = enc_state["patch_embed.proj.weight"]
        enc_state["patch_embed.proj.weight"] = adapt_input_conv(in_chans, weight, base_chans=channels)
        config["clmae"]["in_chans_adapted_from"] = channels  # the trained stem's channels
    dec_state = pretraining.decoder.state_dict() if with_decoder else None
    state = to_vitmae_state(enc_state, dec_state)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    check_finite(state, "the model to export")
    processor = image_processor_config(encoder, in_chans)

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder: give a folder to write the ViTMAE weights into")
    folder.mkdir(parents=True, exist_ok=True)
    write_safetensors(state, folder / WEIGHTS_NAME, {"format": "pt", **weights_metadata(state)})
    write_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n", what="config")
    write_text(folder / PREPROCESSOR_NAME, json.dumps(processor, indent=2) + "\n", what="image processor config")
    return folder


def export_vitmae(
    spec: str | os.PathLike,
    folder: str | os.PathLike,
    *,
    decoder: bool = False,
    in_chans: int | None = None,
    overwrite: bool = False,
) -> Path:
    """``clmae export SPEC OUT --format transformers``: any clmae weight as a ``transformers`` ViTMAE folder (a
    training checkpoint: :func:`clmae.train.export.export_checkpoint_vitmae`).

    Args:
        spec: a weight name or alias, folder or ``hf-hub:`` repo.
        folder: output folder.
        decoder: write the decoder too (``ViTMAEForPreTraining``); the weight must include it.
        in_chans: input channels of the exported encoder (:func:`save_vitmae`): ``3`` makes a 1-channel weight
            take RGB images, as ``transformers.pipeline("image-feature-extraction")`` gives them.
        overwrite: replace ``folder`` whatever it holds (without it, only an empty folder or an earlier clmae
            ViTMAE export is replaced; the folder is always written whole, beside it, then swapped in).

    Returns:
        The folder.
    """
    check_target(folder, is_vitmae_folder, "a transformers ViTMAE folder written by clmae", overwrite=overwrite)
    encoder = load_pretrained(spec)  # with the weight's own preprocessing (config.json's pretrained_cfg)
    if not decoder:
        return save_vitmae_folder(encoder, folder, in_chans=in_chans, overwrite=overwrite)
    model = load_pretraining_model(spec)
    model.encoder.pretrained_cfg = dict(encoder.pretrained_cfg)
    return save_vitmae_folder(model, folder, in_chans=in_chans, overwrite=overwrite)
