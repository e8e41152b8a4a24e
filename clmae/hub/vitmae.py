"""Hugging Face ``transformers`` ViTMAE weights in clmae: a ViTMAE folder's config and keys, mapped exactly onto a timm
``VisionTransformer`` (the encoder) and clmae's :class:`~clmae.models.MAEDecoder`, and back (:mod:`.vitmae_save`).
This module reads the config and the files; :mod:`.vitmae_map` translates them (config fields to architecture
arguments, keys to keys).

A ViTMAE folder (``ViTMAEForPreTraining``: ``vit.*`` encoder and ``decoder.*`` keys; ``ViTMAEModel``: the encoder keys
alone) holds ``config.json`` with ``"model_type": "vit_mae"``, ``model.safetensors`` and usually
``preprocessor_config.json``. Both are the same network as MAE's (facebookresearch/mae ``models_mae.py``): pre-norm
blocks, q/k/v as three linear layers where timm has one ``qkv``, fixed sin-cos positions stored in the weights with a
zero row for the class token. Every architecture argument comes from ``config.json`` (with ``ViTMAEConfig``'s
defaults for absent ones); what clmae's modules cannot express exactly is refused, naming it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import safe_open
from timm.models.vision_transformer import VisionTransformer

from .._files import CONFIG_NAME, WEIGHTS_NAME
from .._parse import read_json as read_bounded_json
from .._safetensors import read_safetensors
from .._state_dict import check_state
from ..models import (
    CLMAE,
    PretrainingConfig,
    create_encoder,
    create_pretraining_model,
    get_arch,
    list_models,
    set_norm_eps,
)
from .vitmae_map import decoder_fields, encoder_args, norm_eps_of, pretrained_cfg, to_clmae_state

MODEL_TYPE = "vit_mae"
PREPROCESSOR_NAME = "preprocessor_config.json"
SHARD_INDEX_NAME = "model.safetensors.index.json"
# Weights files clmae never reads: pickles can run code when loaded.
PICKLE_NAMES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
# ViTMAEConfig's defaults (transformers, configuration_vit_mae.py): a config.json may leave any of them out.
DEFAULTS: dict[str, Any] = {
    "hidden_size": 768,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "qkv_bias": True,
    "decoder_num_attention_heads": 16,
    "decoder_hidden_size": 512,
    "decoder_num_hidden_layers": 8,
    "decoder_intermediate_size": 2048,
    "mask_ratio": 0.75,
    "norm_pix_loss": False,
}
SAFETENSORS_ONLY = (
    "clmae reads only safetensors weights (a pickle can run code when it is loaded); write safetensors with "
    "transformers: `ViTMAEForPreTraining.from_pretrained(FOLDER).save_pretrained(OUT)` (safetensors by default)"
)


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``, or a ``ValueError`` naming the file."""
    value = read_bounded_json(path)
    if not isinstance(value, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(value).__name__}")
    return value


def vitmae_config(config_path: str | Path) -> dict[str, Any] | None:
    """The ``config.json`` at ``config_path`` if it is a ``transformers`` ViTMAE config (``model_type: vit_mae``),
    with ``ViTMAEConfig``'s defaults filled in; ``None`` for any other config (timm's, clmae's)."""
    path = Path(config_path)
    if not path.is_file():
        return None
    try:
        cfg = read_bounded_json(path)
    except ValueError:
        return None  # the timm/clmae reader reports it
    if not isinstance(cfg, dict) or cfg.get("model_type") != MODEL_TYPE:
        return None
    cfg = {**DEFAULTS, **cfg}
    _check_fields(cfg, path)
    return cfg


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _positive_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


_POSITIVE_INTS = (
    "hidden_size",
    "num_attention_heads",
    "num_hidden_layers",
    "intermediate_size",
    "num_channels",
    "decoder_hidden_size",
    "decoder_num_attention_heads",
    "decoder_num_hidden_layers",
    "decoder_intermediate_size",
)


def _check_fields(cfg: Mapping[str, Any], path: Path) -> None:
    """A ``ValueError`` naming the file and the first field of a ViTMAE ``config.json`` of the wrong type or range
    (``num_attention_heads: 0``, ``hidden_size: 0``, ...), before any model is built from it."""

    def bad(field: str, expected: str) -> ValueError:
        value = json.dumps(cfg[field], default=str)[:80]
        return ValueError(f"{path}: field {field} must be {expected}, got {value}; restore the original config.json")

    for field in _POSITIVE_INTS:
        if field in cfg and not _positive_int(cfg[field]):
            raise bad(field, "a positive integer")
    for field in ("image_size", "patch_size"):
        value = cfg.get(field)
        pair = isinstance(value, (list, tuple)) and len(value) == 2 and all(_positive_int(v) for v in value)
        if not (_positive_int(value) or pair):
            raise bad(field, "a positive integer or [height, width]")
    if not _positive_number(cfg.get("layer_norm_eps")):
        raise bad("layer_norm_eps", "a positive number")
    if not isinstance(cfg.get("mask_ratio"), (int, float)) or isinstance(cfg.get("mask_ratio"), bool):
        raise bad("mask_ratio", "a number")
    if cfg.get("clmae") is not None and not isinstance(cfg["clmae"], dict):
        raise bad("clmae", "a JSON object")


def _local_pickles(folder: Path | None) -> list[str]:
    return [n for n in PICKLE_NAMES if folder is not None and (folder / n).is_file()]


def read_state(src: Any, cache_dir: str | Path | None, local_files_only: bool | None) -> dict[str, torch.Tensor]:
    """The ViTMAE tensors of a :class:`~clmae.hub.load.Source`: ``model.safetensors``, or the shards its
    ``model.safetensors.index.json`` lists.

    Raises:
        FileNotFoundError: no safetensors weights (a pickle-only folder is named as such).
    """
    try:
        path = src.file(WEIGHTS_NAME, cache_dir, local_files_only, (CONFIG_NAME, WEIGHTS_NAME))
        return read_safetensors(path)
    except FileNotFoundError as first:
        try:
            index = read_json(src.file(SHARD_INDEX_NAME, cache_dir, local_files_only))
        except FileNotFoundError:
            pickles = _local_pickles(src.folder)
            what = f"only {', '.join(pickles)}" if pickles else f"no {WEIGHTS_NAME}"
            raise FileNotFoundError(f"the ViTMAE weights {src.name} hold {what}: {SAFETENSORS_ONLY}") from first
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set((index.get("weight_map") or {}).values())):
        state.update(read_safetensors(src.file(shard, cache_dir, local_files_only)))
    return state


def _arch_args(name: str) -> dict[str, Any]:
    """The structural timm arguments of a clmae architecture, read off a model built on the meta device."""
    spec = get_arch(name)
    with torch.device("meta"):
        vit = timm.create_model(spec.timm_arch, **spec.model_args)
    return structure_of(vit)


def structure_of(vit: VisionTransformer) -> dict[str, Any]:
    """The structural timm arguments of a built ``VisionTransformer`` (image and patch size, channels, widths, depth,
    heads, MLP ratio, q/k/v bias): what :func:`pick_arch` compares."""
    block = vit.blocks[0]
    img = tuple(vit.patch_embed.img_size)
    return {
        "img_size": img[0] if img[0] == img[1] else list(img),
        "patch_size": vit.patch_embed.patch_size[0],
        "in_chans": vit.patch_embed.proj.in_channels,
        "embed_dim": vit.embed_dim,
        "depth": len(vit.blocks),
        "num_heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.fc1.out_features / vit.embed_dim,
        "qkv_bias": block.attn.qkv.bias is not None,
    }


def pick_arch(args: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The clmae architecture closest to these timm arguments (fewest overrides; ties: the first in
    :func:`clmae.list_models` order) and the overrides that make it equal."""
    best: tuple[int, str, dict[str, Any]] | None = None
    for name in list_models():
        ref = _arch_args(name)
        overrides = {k: v for k, v in args.items() if ref.get(k) != v}
        if best is None or len(overrides) < best[0]:
            best = (len(overrides), name, overrides)
    assert best is not None
    return best[1], best[2]


def pretraining_config(hf: Mapping[str, Any]) -> PretrainingConfig:
    """The MAE :class:`PretrainingConfig` (no masking module) whose model has exactly a ViTMAE config's layout."""
    name, overrides = pick_arch(encoder_args(hf))
    norm_eps_of(hf)
    return PretrainingConfig.from_kwargs(name, "mae", **overrides, **decoder_fields(hf))


def build_encoder(hf: Mapping[str, Any], preprocessing: Mapping[str, Any], **kwargs: Any) -> VisionTransformer:
    """A randomly initialised timm encoder with a ViTMAE config's layout and LayerNorm epsilon.

    Args:
        hf: the ViTMAE ``config.json`` (:func:`vitmae_config`).
        preprocessing: timm ``pretrained_cfg`` keys (:func:`pretrained_cfg`).
        **kwargs: timm arguments that override the config's (``num_classes``, ``img_size``...).
    """
    name, overrides = pick_arch(encoder_args(hf))
    model = create_encoder(name, **{**overrides, **kwargs})
    set_norm_eps(model, norm_eps_of(hf))
    model.pretrained_cfg.update(preprocessing)
    model.pretrained_cfg["input_size"] = (model.patch_embed.proj.in_channels, *model.patch_embed.img_size)
    return model


def preprocessing_of(
    src: Any, hf: Mapping[str, Any], cache_dir: str | Path | None, local_files_only: bool | None
) -> dict[str, Any]:
    """timm preprocessing of a ViTMAE source: its ``preprocessor_config.json``, or ``ViTImageProcessor``'s defaults."""
    try:
        path = src.file(PREPROCESSOR_NAME, cache_dir, local_files_only)
    except FileNotFoundError:
        return pretrained_cfg(hf, None)
    return pretrained_cfg(hf, read_json(path))


def config_of(src: Any, cache_dir: str | Path | None = None, local_files_only: bool | None = None) -> dict | None:
    """The ViTMAE config of a :class:`~clmae.hub.resolve.Source` (:func:`vitmae_config`), ``None`` if its
    ``config.json`` is another kind (timm's, clmae's)."""
    return vitmae_config(src.file(CONFIG_NAME, cache_dir, local_files_only, (CONFIG_NAME, src.encoder_file())))


def vitmae_source(spec: str, cache_dir: str | Path | None = None, local_files_only: bool | None = None):
    """``(Source, config)`` if ``spec`` (a folder, ``local-dir:`` or ``hf-hub:``) holds a ViTMAE model, else ``None``
    (registry names are never ViTMAE folders)."""
    from .resolve import resolve

    if not isinstance(spec, str) or not (
        spec.startswith(("hf-hub:", "local-dir:")) or Path(spec).expanduser().is_dir()
    ):
        return None
    src = resolve(spec)
    hf = config_of(src, cache_dir, local_files_only)
    return None if hf is None else (src, hf)


def has_decoder(src: Any, cache_dir: str | Path | None = None, local_files_only: bool | None = None) -> bool:
    """Whether a ViTMAE source holds a decoder (``ViTMAEForPreTraining``), from its tensor names alone."""
    try:
        path = src.file(WEIGHTS_NAME, cache_dir, local_files_only, (CONFIG_NAME, WEIGHTS_NAME))
    except FileNotFoundError:
        return any(k.startswith("decoder.") for k in read_state(src, cache_dir, local_files_only))
    with safe_open(path, framework="pt", device="cpu") as f:
        return any(k.startswith("decoder.") for k in f.keys())  # noqa: SIM118 (safe_open is no dict)


def read_clmae_state(
    src: Any, cache_dir: str | Path | None = None, local_files_only: bool | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """A ViTMAE source's weights as (timm encoder keys, :class:`MAEDecoder` keys; empty for ``ViTMAEModel``)."""
    return to_clmae_state(read_state(src, cache_dir, local_files_only))


def record_source(model: VisionTransformer, src: Any) -> None:
    model.pretrained_cfg.update(source=src.name, method="mae", format="transformers ViTMAE")
    if src.repo_id is not None:
        model.pretrained_cfg.update(hf_hub_id=src.repo_id, revision=src.revision)
    model.default_cfg = model.pretrained_cfg  # timm keeps default_cfg as an alias


def load_pretraining(
    src: Any, hf: Mapping[str, Any], cache_dir: str | Path | None, local_files_only: bool | None
) -> CLMAE:
    """:func:`clmae.load_pretraining_model` for a ``ViTMAEForPreTraining`` source: an MAE :class:`CLMAE` (encoder and
    decoder, no masking module) in eval mode."""
    encoder_state, decoder_state = read_clmae_state(src, cache_dir, local_files_only)
    if not decoder_state:
        raise ValueError(
            f"{src.name} is a transformers ViTMAEModel (encoder only): it has no decoder; load its encoder with "
            "load_pretrained(), or give a ViTMAEForPreTraining folder"
        )
    model = create_pretraining_model(pretraining_config(hf))
    for part, state in (("encoder", encoder_state), ("decoder", decoder_state)):
        module = getattr(model, part)
        check_state(module, state, f"{src.name} ({part})")
        module.load_state_dict(state)
    model.encoder.pretrained_cfg.update(preprocessing_of(src, hf, cache_dir, local_files_only))
    record_source(model.encoder, src)
    return model.eval()
