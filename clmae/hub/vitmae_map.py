"""The ViTMAE map: how a transformers ViTMAE model becomes clmae's, and back.

A ViTMAE config's fields become timm ``VisionTransformer`` arguments, :class:`~clmae.models.PretrainingConfig` fields
and timm's preprocessing; a ViTMAE state dict (``ViTMAEModel`` or ``ViTMAEForPreTraining``, transformers 4.x and 5.x
module names) becomes a timm encoder's keys and :class:`~clmae.models.MAEDecoder`'s, and back to the names
transformers saves (q, k and v, three linear layers there, are timm's one ``qkv`` here). The config and the files
are read by :mod:`.vitmae`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import torch

# transformers' ACT2FN names that are exactly torch's erf GELU, timm's default activation.
EXACT_GELU = ("gelu",)

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
