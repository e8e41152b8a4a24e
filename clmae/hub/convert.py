"""Convert a reference CL-MAE or MAE training checkpoint (a torch pickle), or a ``transformers`` ViTMAE folder, into a
clmae weights folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import timm
import torch

from .._atomic import check_target
from .._checkpoint_file import load_torch_checkpoint
from .._state_dict import check_state
from ..models import METHOD_TITLES, create_encoder, create_pretraining_model, get_arch, list_models
from .load import load_pretrained, load_pretraining_model
from .save import is_weights_folder, save_weights_folder
from .vitmae import has_decoder, pick_arch, vitmae_source
from .vitmae_map import encoder_args

# Reference (facebookresearch/mae, CL-MAE) key prefix -> clmae's. Longest prefixes first; encoder keys are the
# remaining timm ViT keys and get "encoder." in front.
_RENAMES = (
    ("masking_net.", "masker."),
    ("decoder_embed.", "decoder.embed."),
    ("decoder_pos_embed", "decoder.pos_embed"),
    ("decoder_blocks.", "decoder.blocks."),
    ("decoder_norm.", "decoder.norm."),
    ("decoder_pred.", "decoder.pred."),
    ("mask_token", "decoder.mask_token"),
)
_ENCODER_PREFIXES = ("cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.")
# Keys of a pretraining state dict that are not the encoder's: the reference's (above) and clmae's.
_NOT_ENCODER = (*(old for old, _ in _RENAMES), "decoder.", "masker.")
# The masking module's positional embedding is a fixed [1, 1, D] of zeros in the reference: nothing to keep.
_DROPPED = ("masking_net.pos_embed",)


def load_reference_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a reference training checkpoint with ``torch.load(weights_only=True)``.

    ``argparse.Namespace`` (the ``args`` entry) is the only non-tensor class allowed; anything else is refused.

    Args:
        path: the ``.pth`` file (``{model, optimizer, epoch, scaler, args}``, or a bare state dict).

    Returns:
        The model state dict and the ``args`` as a dict (empty if absent), plus ``epoch`` if present.
    """
    ckpt = load_torch_checkpoint(path)
    if {"model", "config", "global_batch", "rng_ranks"} <= set(ckpt):
        raise ValueError(
            f"{path} is a clmae training checkpoint, not a reference one: write its weights folder with "
            f"`clmae export {path} OUT` (or continue the run with clmae train --resume)"
        )
    state = ckpt.get("model", ckpt)
    args = ckpt.get("args")
    info = dict(vars(args)) if isinstance(args, argparse.Namespace) else dict(args or {})
    if "epoch" in ckpt:
        info["epoch"] = ckpt["epoch"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: its 'model' entry is not a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}, info


def rename_reference_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference key layout (docs/method.md §8) -> :class:`~clmae.models.CLMAE` keys (``encoder.*``, ``decoder.*``,
    ``masker.*``)."""
    out, unknown = {}, []
    for key, value in state.items():
        if key in _DROPPED:
            if value.count_nonzero():
                raise ValueError(f"{key} is not all zeros: this is not the reference masking module's layout")
            continue
        for old, new in _RENAMES:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            if key.startswith(_ENCODER_PREFIXES):
                out["encoder." + key] = value
            else:
                unknown.append(key)
    if unknown:
        raise ValueError(
            f"keys not in a reference CL-MAE/MAE pretraining checkpoint: {unknown[:8]}; a fine-tuned checkpoint "
            "(with a head) is not a pretraining checkpoint"
        )
    return out


def encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's entries of a state dict, with timm's key names.

    Accepts an encoder state dict (timm keys, a fine-tuned model's head included), a clmae pretraining model's
    (``encoder.*``) or a CL-MAE / MAE reference checkpoint's ``model`` (timm keys plus ``masking_net.*``,
    ``decoder_*``, ``mask_token``: :func:`rename_reference_keys`' layout).
    """
    if any(k.startswith("encoder.") for k in state):
        return {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    return {k: v for k, v in state.items() if not k.startswith(_NOT_ENCODER)}


def _geometry(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Widths, depths and sizes read off the tensors (heads cannot be: they come from the architecture)."""
    d, c, p, _ = state["encoder.patch_embed.proj.weight"].shape
    grid = round((state["encoder.pos_embed"].shape[1] - 1) ** 0.5)

    def depth(prefix: str) -> int:
        return len({k[len(prefix) :].split(".")[0] for k in state if k.startswith(prefix)})

    geo = {"embed_dim": d, "in_chans": c, "patch_size": p, "img_size": grid * p, "depth": depth("encoder.blocks.")}
    if "decoder.embed.weight" in state:
        geo.update(decoder_embed_dim=state["decoder.embed.weight"].shape[0], decoder_depth=depth("decoder.blocks."))
    if "masker.cls_token" in state:
        geo["masker_depth"] = depth("masker.blocks.")
    return geo


def _arch_defaults(name: str) -> dict[str, Any]:
    spec = get_arch(name)
    with torch.device("meta"):
        vit = timm.create_model(spec.timm_arch, **spec.model_args)
    return {
        "embed_dim": vit.embed_dim,
        "depth": len(vit.blocks),
        "num_heads": vit.blocks[0].attn.num_heads,
        "in_chans": vit.patch_embed.proj.in_channels,
        "patch_size": vit.patch_embed.patch_size[0],
        "img_size": vit.patch_embed.img_size[0],
    }


def _pick_arch(geo: dict[str, Any], name: str | None, num_heads: int | None) -> tuple[str, dict[str, Any]]:
    """The clmae architecture and the encoder overrides that give this geometry."""
    size = ("in_chans", "patch_size", "img_size")
    if name is None:
        defaults = {n: _arch_defaults(n) for n in list_models()}
        exact = [n for n, d in defaults.items() if all(d[k] == geo[k] for k in (*size, "embed_dim", "depth"))]
        same_size = [n for n, d in defaults.items() if all(d[k] == geo[k] for k in size)]
        if exact:
            name = exact[0]
        elif same_size and num_heads is not None:
            name = same_size[0]  # any architecture of this input geometry; width and depth become overrides
        else:
            raise ValueError(
                f"no clmae architecture has this checkpoint's geometry ({geo}); pass name=<a clmae.list_models() "
                "name> and num_heads=... (attention heads are not stored in the weights)"
            )
    ref = _arch_defaults(name)
    if any(ref[k] != geo[k] for k in size):
        ours, theirs = [ref[k] for k in size], [geo[k] for k in size]
        raise ValueError(f"architecture {name} has {ours} (in_chans, patch, image), checkpoint {theirs}")
    overrides = {k: geo[k] for k in ("embed_dim", "depth") if ref[k] != geo[k]}
    return name, overrides


def convert_vitmae(
    spec: str, folder: str | Path, *, metadata: dict[str, Any] | None = None, overwrite: bool = False
) -> Path:
    """Turn a ``transformers`` ViTMAE folder or ``hf-hub:`` repo into a clmae weights folder: the MAE pretraining
    model from a ``ViTMAEForPreTraining`` (it has a decoder), the encoder alone from a ``ViTMAEModel``
    (:mod:`clmae.hub.vitmae`). ``folder`` is written as :func:`~clmae.hub.save.save_weights_folder` does (whole,
    and only over an earlier clmae weights folder unless ``overwrite``)."""
    check_target(folder, is_weights_folder, "a clmae-format weights folder", overwrite=overwrite)
    found = vitmae_source(spec)
    if found is None:
        raise ValueError(
            f"{spec} is not a transformers ViTMAE folder (config.json with model_type vit_mae); a clmae or timm "
            "weights folder needs no conversion, and a reference checkpoint is a .pth file"
        )
    src, hf = found
    full = has_decoder(src)
    model = load_pretraining_model(spec) if full else load_pretrained(spec)
    meta = {"method": "mae", **(metadata or {})}
    what = "pretraining model (encoder and decoder)" if full else "encoder"
    meta.setdefault("description", f"MAE {what} converted from the transformers ViTMAE weights `{spec}`.")
    name = pick_arch(encoder_args(hf))[0]
    return save_weights_folder(model, folder, overwrite=overwrite, name=name, metadata=meta)


def convert_checkpoint(
    checkpoint: str | Path,
    folder: str | Path,
    *,
    name: str | None = None,
    num_heads: int | None = None,
    decoder_num_heads: int | None = None,
    masker_num_heads: int = 4,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Turn a reference CL-MAE/MAE checkpoint into a weights folder (see :func:`clmae.save_pretrained`).

    A checkpoint with decoder (and masking module) keys gives the full pretraining model too
    (``pretraining.safetensors``); an encoder-only one gives the encoder alone. Attention head counts are not in the
    weights: they default to the architecture's (encoder), 16 (decoder, MAE's) and 4 (masking module, CL-MAE's).

    Args:
        checkpoint: the reference ``.pth``.
        folder: output folder.
        name: clmae architecture (default: the one whose width, depth, patch and image size match).
        num_heads: encoder heads, if not the architecture's.
        decoder_num_heads: decoder heads (default: the architecture's).
        masker_num_heads: masking-module heads (reference: 4).
        metadata: model card facts, as for :func:`clmae.save_pretrained`.
        overwrite: replace ``folder`` whatever it holds (without it, only an empty folder or an earlier clmae
            weights folder is replaced; the folder is always written whole, beside it, then swapped in).

    Returns:
        The folder.
    """
    check_target(folder, is_weights_folder, "a clmae-format weights folder", overwrite=overwrite)
    if str(checkpoint).startswith(("hf-hub:", "local-dir:")) or Path(checkpoint).is_dir():  # transformers ViTMAE
        return convert_vitmae(str(checkpoint), folder, metadata=metadata, overwrite=overwrite)
    raw, info = load_reference_checkpoint(checkpoint)
    state = rename_reference_keys(raw)
    geo = _geometry(state)
    name, overrides = _pick_arch(geo, name, num_heads)
    if num_heads is not None:
        overrides["num_heads"] = num_heads
    elif "embed_dim" in overrides:
        raise ValueError(f"the encoder width differs from {name}'s: pass num_heads=... (heads are not in the weights)")
    method = "clmae" if "masker_depth" in geo else "mae"
    meta = {"method": method, **(metadata or {})}
    meta.setdefault(
        "description",
        f"{METHOD_TITLES[method]} encoder converted from the reference checkpoint "
        f"`{Path(checkpoint).name}`" + (f" (epoch {info['epoch']})" if "epoch" in info else "") + ".",
    )
    if "decoder_embed_dim" not in geo:  # encoder only
        encoder = create_encoder(name, **overrides)
        enc_state = {k.removeprefix("encoder."): v for k, v in state.items()}
        check_state(encoder, enc_state, str(checkpoint))
        encoder.load_state_dict(enc_state)
        return save_weights_folder(encoder.eval(), folder, overwrite=overwrite, name=name, metadata=meta)
    config: dict[str, Any] = {
        "method": method,
        "decoder_embed_dim": geo["decoder_embed_dim"],
        "decoder_depth": geo["decoder_depth"],
        "decoder_num_heads": decoder_num_heads,
        "masker_depth": geo.get("masker_depth", 5),
        "masker_num_heads": masker_num_heads,
        **overrides,
    }
    for key in ("mask_ratio", "norm_pix_loss"):
        if key in info:
            config[key] = info[key]
    model = create_pretraining_model(name, **config)
    check_state(model, state, str(checkpoint))
    model.load_state_dict(state)
    return save_weights_folder(model.eval(), folder, overwrite=overwrite, name=name, metadata=meta)
