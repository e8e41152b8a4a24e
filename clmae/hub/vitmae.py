"""Hugging Face ``transformers`` ViTMAE weights in clmae: a ViTMAE folder's config and keys, mapped exactly onto a timm
``VisionTransformer`` (the encoder) and clmae's :class:`~clmae.models.MAEDecoder`, and back (:mod:`.vitmae_save`).

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
import re
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
# transformers' ACT2FN names that are exactly torch's erf GELU, timm's default activation.
EXACT_GELU = ("gelu",)
SAFETENSORS_ONLY = (
    "clmae reads only safetensors weights (a pickle can run code when it is loaded); write safetensors with "
    "transformers: `ViTMAEForPreTraining.from_pretrained(FOLDER).save_pretrained(OUT)` (safetensors by default)"
)

# One transformer layer, as transformers saves it (<= 4.x module names, kept on disk by 5.x) and as 5.x names it in
# memory, -> timm ``Block``; q, k and v are concatenated into timm's ``attn.qkv`` (in that order).
_LAYER = {
    "layernorm_before": "norm1",
    "layernorm_after": "norm2",
    "attention.output.dense": "attn.proj",
    "attention.o_proj": "attn.proj",
    "intermediate.dense": "mlp.fc1",
    "mlp.fc1": "mlp.fc1",
    "output.dense": "mlp.fc2",
    "mlp.fc2": "mlp.fc2",
    "attention.attention.query": "q",
    "attention.q_proj": "q",
    "attention.attention.key": "k",
    "attention.k_proj": "k",
    "attention.attention.value": "v",
    "attention.v_proj": "v",
}
# Everything else, encoder (``vit.`` stripped) and decoder (``decoder.`` stripped).
_ENCODER = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection": "patch_embed.proj",
    "layernorm": "norm",
}
_DECODER = {
    "decoder_embed": "embed",
    "mask_token": "mask_token",
    "decoder_pos_embed": "pos_embed",
    "decoder_norm": "norm",
    "decoder_pred": "pred",
}
_ENCODER_LAYER = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)$")
_DECODER_LAYER = re.compile(r"^(?:decoder_encoder\.layer|decoder_layers)\.(\d+)\.(.+)$")
# The saved names clmae writes (what transformers 4.x and 5.x both read).
_SAVED_LAYER = {
    "norm1": "layernorm_before",
    "norm2": "layernorm_after",
    "attn.proj": "attention.output.dense",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_SAVED_QKV = ("attention.attention.query", "attention.attention.key", "attention.attention.value")


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


def _pair(value: Any, name: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise ValueError(f"ViTMAE config.json: {name}={value!r} is not an int or a pair of ints")


def _per_channel(value: Any, channels: int) -> list[float]:
    return list(value) if isinstance(value, (list, tuple)) else [value] * channels


def _mlp_ratio(hidden: int, intermediate: int, name: str) -> float:
    ratio = intermediate / hidden
    if int(hidden * ratio) != intermediate:  # timm's Mlp is int(dim * mlp_ratio) wide
        raise ValueError(f"ViTMAE config.json: {name}={intermediate} is not int(hidden size * a ratio) for timm's Mlp")
    return ratio


def encoder_args(hf: Mapping[str, Any]) -> dict[str, Any]:
    """timm ``VisionTransformer`` arguments equal to a ViTMAE config's encoder (the LayerNorm epsilon aside, see
    :func:`clmae.models.set_norm_eps`).

    Raises:
        ValueError: naming the config key that timm's ViT cannot express exactly (an activation other than erf GELU,
            a ``head_dim`` other than hidden size / heads, a non-square patch).
    """
    if hf.get("hidden_act") not in EXACT_GELU:
        raise ValueError(
            f"ViTMAE config.json: hidden_act={hf.get('hidden_act')!r} cannot be mapped exactly; clmae's timm encoder "
            "and MAE decoder use erf GELU (hidden_act='gelu')"
        )
    hidden, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, hidden // heads) or hidden % heads:
        raise ValueError(
            f"ViTMAE config.json: head_dim={hf.get('head_dim')!r} with hidden_size={hidden} and "
            f"num_attention_heads={heads}: timm needs heads of hidden_size / num_attention_heads"
        )
    patch = _pair(hf["patch_size"], "patch_size")
    if patch[0] != patch[1]:
        raise ValueError(f"ViTMAE config.json: patch_size={list(patch)} is not square; clmae needs square patches")
    height, width = _pair(hf["image_size"], "image_size")
    return {
        "img_size": height if height == width else [height, width],
        "patch_size": patch[0],
        "in_chans": hf["num_channels"],
        "embed_dim": hidden,
        "depth": hf["num_hidden_layers"],
        "num_heads": heads,
        "mlp_ratio": _mlp_ratio(hidden, hf["intermediate_size"], "intermediate_size"),
        "qkv_bias": bool(hf["qkv_bias"]),
    }


def decoder_fields(hf: Mapping[str, Any]) -> dict[str, Any]:
    """:class:`~clmae.models.PretrainingConfig` fields of a ViTMAE config's decoder, losses and LayerNorm epsilon.

    Raises:
        ValueError: naming what clmae's MAE decoder cannot express (an MLP ratio other than 4, no q/k/v biases).
    """
    width = hf["decoder_hidden_size"]
    if hf["decoder_intermediate_size"] != 4 * width:
        raise ValueError(
            f"ViTMAE config.json: decoder_intermediate_size={hf['decoder_intermediate_size']} is not 4 x "
            f"decoder_hidden_size={width}: clmae's MAE decoder has MAE's MLP ratio of 4"
        )
    if not hf["qkv_bias"]:
        raise ValueError("ViTMAE config.json: qkv_bias=false: clmae's MAE decoder has q/k/v biases (MAE's)")
    fields = {
        "decoder_embed_dim": width,
        "decoder_depth": hf["decoder_num_hidden_layers"],
        "decoder_num_heads": hf["decoder_num_attention_heads"],
        "norm_eps": float(hf["layer_norm_eps"]),
        "norm_pix_loss": bool(hf["norm_pix_loss"]),
    }
    # A training choice, not the architecture: mask_ratio 0.0 (feature extraction, as clmae exports) keeps clmae's
    # 0.75, or the ratio the export recorded.
    ratio = (hf.get("clmae") or {}).get("mask_ratio", hf["mask_ratio"])
    fields["mask_ratio"] = ratio if isinstance(ratio, (int, float)) and 0.0 < ratio < 1.0 else 0.75
    return fields


def norm_eps_of(hf: Mapping[str, Any]) -> float:
    """The ViTMAE config's LayerNorm epsilon (every LayerNorm of its encoder and decoder)."""
    eps = hf["layer_norm_eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0 or not math.isfinite(eps):
        raise ValueError(f"ViTMAE config.json: layer_norm_eps={eps!r} is not a positive number")
    return float(eps)


def pretrained_cfg(hf: Mapping[str, Any], preprocessor: Mapping[str, Any] | None) -> dict[str, Any]:
    """timm's preprocessing (``pretrained_cfg``) equal to a ViTMAE folder's image processor.

    ``ViTImageProcessor`` (``facebook/vit-mae-*``) resizes the whole image to the input size, which is timm's
    ``crop_mode="squash"``; a processor with ``do_center_crop`` (what clmae exports) resizes the short side and crops
    the centre, timm's default. Without ``preprocessor_config.json``, ``ViTImageProcessor``'s defaults.
    """
    pp = dict(preprocessor or {})
    height, width = _pair(hf["image_size"], "image_size")
    channels = hf["num_channels"]
    mean, std = (_per_channel(pp.get(k, 0.5), channels) for k in ("image_mean", "image_std"))
    # PIL's resampling codes (transformers' ``resample``) -> timm's names.
    interpolation = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
    cfg: dict[str, Any] = {
        "input_size": (channels, height, width),
        "interpolation": interpolation.get(pp.get("resample", 2), "bilinear"),
        "mean": tuple(mean),
        "std": tuple(std),
        "crop_pct": 1.0,
        "crop_mode": "squash",
        "fixed_input_size": True,
    }
    size = pp.get("size") or {}
    if pp.get("do_center_crop") and isinstance(size, dict) and "shortest_edge" in size:
        cfg.update(crop_mode="center", crop_pct=min(height, width) / size["shortest_edge"])
    return cfg


def _split_layer(rest: str) -> tuple[str, str] | None:
    """``"attention.attention.query.weight"`` -> ``("q", "weight")``; ``None`` if not a layer tensor."""
    module, _, leaf = rest.rpartition(".")
    target = _LAYER.get(module)
    return None if target is None or leaf not in ("weight", "bias") else (target, leaf)


def to_clmae_state(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """ViTMAE state dict (either layout, with or without ``vit.``) -> (timm encoder keys, :class:`MAEDecoder` keys).

    The decoder dict is empty for a ``ViTMAEModel`` (encoder only).

    Raises:
        ValueError: keys that are not ViTMAE's, or q/k/v with some biases missing, named.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "decoder": {}}
    qkv: dict[tuple[str, str, str], torch.Tensor] = {}  # (part, block prefix, leaf + q/k/v) -> tensor
    unknown = []
    for key, value in state.items():
        if key.startswith("decoder."):
            part, rest, names, layer = "decoder", key[len("decoder.") :], _DECODER, _DECODER_LAYER
        else:
            part, rest, names, layer = "encoder", key.removeprefix("vit."), _ENCODER, _ENCODER_LAYER
        module, _, leaf = rest.rpartition(".")
        if rest in names:  # a parameter (cls_token, positions, mask token)
            parts[part][names[rest]] = value
            continue
        if module in names:
            parts[part][f"{names[module]}.{leaf}"] = value
            continue
        m = layer.match(rest)
        mapped = _split_layer(m.group(2)) if m else None
        if mapped is None:
            unknown.append(key)
            continue
        target, leaf = mapped
        block = f"blocks.{m.group(1)}"
        if target in ("q", "k", "v"):
            qkv[(part, block, f"{leaf}:{target}")] = value
        else:
            parts[part][f"{block}.{target}.{leaf}"] = value
    if unknown:
        raise ValueError(
            f"keys that are not a transformers ViTMAE model's cannot be mapped onto clmae: {unknown[:8]}"
            + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "")
        )
    for part, block in sorted({(p, b) for p, b, _ in qkv}):
        for leaf in ("weight", "bias"):
            got = [qkv.get((part, block, f"{leaf}:{t}")) for t in ("q", "k", "v")]
            if all(t is None for t in got) and leaf == "bias":
                continue  # qkv_bias=false
            if any(t is None for t in got):
                missing = [t for t, g in zip(("query", "key", "value"), got) if g is None]
                raise ValueError(f"{part} {block}: the attention {leaf} of {', '.join(missing)} is missing")
            parts[part][f"{block}.attn.qkv.{leaf}"] = torch.cat(got, dim=0)
    return parts["encoder"], parts["decoder"]


def to_vitmae_state(
    encoder: Mapping[str, torch.Tensor], decoder: Mapping[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """timm encoder keys (and :class:`MAEDecoder` keys) -> the ViTMAE keys transformers saves: ``ViTMAEModel``'s
    without a decoder, ``ViTMAEForPreTraining``'s (``vit.*``, ``decoder.*``) with one.

    Raises:
        ValueError: keys with no ViTMAE counterpart (a classifier head, register tokens...), named.
    """
    out: dict[str, torch.Tensor] = {}
    unknown = []
    for part, state, names, layer in (
        ("encoder", encoder, _ENCODER, "encoder.layer"),
        ("decoder", decoder or {}, _DECODER, "decoder_encoder.layer"),
    ):
        prefix = ("vit." if decoder is not None else "") if part == "encoder" else "decoder."
        inverse = {v: k for k, v in names.items()}
        for key, value in state.items():
            module, _, leaf = key.rpartition(".")
            if key in inverse:
                out[prefix + inverse[key]] = value
            elif module in inverse:
                out[f"{prefix}{inverse[module]}.{leaf}"] = value
            elif m := re.match(r"^blocks\.(\d+)\.(.+)$", module):
                base = f"{prefix}{layer}.{m.group(1)}."
                if m.group(2) == "attn.qkv":
                    for name, chunk in zip(_SAVED_QKV, value.chunk(3, dim=0)):
                        out[f"{base}{name}.{leaf}"] = chunk.contiguous()
                elif m.group(2) in _SAVED_LAYER:
                    out[f"{base}{_SAVED_LAYER[m.group(2)]}.{leaf}"] = value
                else:
                    unknown.append(f"{part}.{key}")
            else:
                unknown.append(f"{part}.{key}")
    if unknown:
        raise ValueError(f"these weights have no counterpart in a transformers ViTMAE model: {unknown[:8]}")
    return out


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
