"""Continued pretraining: start a run from existing weights (``init=SPEC``) instead of a random initialisation.

* ``init=SPEC`` with an encoder -- a registry name (``clmae pretrained``), ``hf-hub:ORG/REPO``, ``local-dir:PATH``,
  a weights folder or a ``.safetensors`` file of encoder weights -- loads the encoder; the decoder and the masking
  module start fresh.
* ``init=SPEC`` with a ``transformers`` ViTMAE folder or ``hf-hub:`` repo loads its encoder and, from a
  ``ViTMAEForPreTraining``, its decoder (the masking module starts fresh); the run must have its LayerNorm epsilon
  (``model_kwargs.norm_eps=1e-12`` for ``facebook/vit-mae-*``).
* ``init=pretraining:SPEC`` (any of the forms above holding ``pretraining.safetensors``), or a ``.safetensors`` file
  of a whole pretraining model (keys ``encoder.*``, ``decoder.*``, ``masker.*``), loads all three. A masking module
  the run does not have (MAE) is left out; one the file does not have (MAE weights into a CL-MAE run) starts fresh.

An encoder of another image size or channel count is adapted as timm adapts pretrained weights: positions with
``resample_abs_pos_embed``, the patch embedding with ``resample_patch_embed`` (patch size) and ``adapt_input_conv``
(channels, from RGB weights; from other channel counts the filters are repeated and scaled the same way), each with a
log line. The curriculum starts at the beginning of the new run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from timm.layers import resample_patch_embed
from timm.models import adapt_input_conv

from .._io import read_safetensors
from ..models import CLMAE, norm_eps

PRETRAINING_PREFIX = "pretraining:"
_FIX = "init= needs weights of the run's architecture (embed_dim, depth, heads); pick a matching model"


def _adapt_patch_embed(state: dict[str, torch.Tensor], encoder: torch.nn.Module, notes: list[str]) -> None:
    weight, target = state.get("patch_embed.proj.weight"), encoder.patch_embed.proj.weight
    if weight is None or weight.shape == target.shape or weight.shape[0] != target.shape[0]:
        return  # nothing to adapt, or another width: the state check names it
    have, want = weight.shape[1], target.shape[1]
    if have != want:
        if have == 3:  # timm's rule for RGB weights: summed for 1 channel, repeated and rescaled for more
            notes.append(f"input channels 3 -> {want} (timm adapt_input_conv)")
            weight = adapt_input_conv(want, weight)
        else:  # the same rule from any channel count: repeated, then scaled so a constant image gives the same output
            notes.append(f"input channels {have} -> {want} (repeated and scaled by {have}/{want})")
            weight = weight.repeat(1, -(-want // have), 1, 1)[:, :want] * (have / want)
    if weight.shape[-2:] != target.shape[-2:]:
        notes.append(f"patch size {tuple(weight.shape[-2:])} -> {tuple(target.shape[-2:])} (timm resample_patch_embed)")
        weight = resample_patch_embed(weight, list(target.shape[-2:]))
    state["patch_embed.proj.weight"] = weight


def load_encoder_into(model: CLMAE, state: dict[str, torch.Tensor], where: str) -> list[str]:
    """Load encoder weights (timm keys) into ``model.encoder``, adapting channels, patch size and positions.

    Returns:
        What was adapted, one phrase each.
    """
    from ..hub import load_encoder_state

    encoder, notes, state = model.encoder, [], dict(state)
    _adapt_patch_embed(state, encoder, notes)
    pos = state.get("pos_embed")
    if pos is not None and encoder.pos_embed is not None and pos.shape != encoder.pos_embed.shape:
        notes.append(f"positions {pos.shape[1]} -> {encoder.pos_embed.shape[1]} (timm resample_abs_pos_embed)")
    load_encoder_state(encoder, state, where, optional=("head.",), fix=_FIX)
    return notes


def _split(state: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        part, _, rest = key.partition(".")
        parts.setdefault(part, {})[rest] = value
    return parts


def load_pretraining_into(model: CLMAE, state: dict[str, torch.Tensor], where: str) -> list[str]:
    """Load a whole pretraining model's weights (``encoder.*``, ``decoder.*``, ``masker.*``) into ``model``.

    Returns:
        What was adapted or left fresh, one phrase each.
    """
    from .._io import check_state

    parts = _split(state)
    unknown = sorted(set(parts) - {"encoder", "decoder", "masker"})
    if unknown or "encoder" not in parts or "decoder" not in parts:
        raise ValueError(
            f"init: {where} is not a pretraining model's weights (expected encoder.*, decoder.* and masker.* keys, "
            f"found {', '.join(sorted(parts)) or 'none'}); for encoder weights drop the {PRETRAINING_PREFIX!r} prefix"
        )
    notes = load_encoder_into(model, parts["encoder"], where)
    fix = (
        "a whole pretraining model must match the run's architecture, image size and channels (its decoder and "
        f"masking module are not resampled); start from its encoder instead (init= without {PRETRAINING_PREFIX!r})"
    )
    check_state(model.decoder, parts["decoder"], f"{where} (decoder)", fix=fix)
    model.decoder.load_state_dict(parts["decoder"])
    if model.masker is None:
        if "masker" in parts:
            notes.append("masking module left out (an MAE run has none)")
    elif "masker" not in parts:
        notes.append("masking module starts fresh (the weights have none: MAE)")
    else:
        check_state(model.masker, parts["masker"], f"{where} (masking module)", fix=fix)
        model.masker.load_state_dict(parts["masker"])
    return notes


def _vitmae_state(model: CLMAE, src: Any, hf: dict[str, Any], full: bool) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A ViTMAE source's weights with clmae's keys (``encoder.*``, and ``decoder.*`` when it has a decoder), checked
    against what the run's model cannot adapt: its LayerNorm epsilon."""
    from ..hub.vitmae import norm_eps_of, read_clmae_state

    encoder, decoder = read_clmae_state(src)
    if full and not decoder:
        raise ValueError(
            f"init: {src.name} is a transformers ViTMAEModel (encoder only): it has no decoder; drop the "
            f"{PRETRAINING_PREFIX!r} prefix to start from its encoder"
        )
    eps, run_eps = norm_eps_of(hf), norm_eps(model.encoder)
    if eps != run_eps:
        raise ValueError(
            f"init: {src.name} has LayerNorm epsilon {eps:g} (its layer_norm_eps), this run's model {run_eps:g}; add "
            f"model_kwargs.norm_eps={eps:g} so that its encoder and decoder compute what they were trained to"
        )
    notes = []
    if decoder and bool(hf["norm_pix_loss"]) != model.norm_pix_loss:
        notes.append(
            f"the decoder was trained with norm_pix_loss={bool(hf['norm_pix_loss'])}, this run uses "
            f"norm_pix_loss={model.norm_pix_loss}"
        )
    state = {f"encoder.{k}": v for k, v in encoder.items()}
    state.update({f"decoder.{k}": v for k, v in decoder.items()})
    return state, notes


def initialize(model: CLMAE, spec: str, log: Callable[[str], None] = print) -> None:
    """Load the weights named by ``spec`` (see the module docstring) into ``model``, logging what was done."""
    from ..hub import load_pretrained, load_pretraining_model
    from ..hub.vitmae import vitmae_source

    full = spec.startswith(PRETRAINING_PREFIX)
    name = spec[len(PRETRAINING_PREFIX) :] if full else spec
    path = Path(name).expanduser()
    if path.suffix == ".safetensors" and path.is_file():
        state = read_safetensors(path)  # checked: recorded tensor digests, no NaN/inf
        full = full or any(k.startswith("encoder.") for k in state)
        notes = (load_pretraining_into if full else load_encoder_into)(model, state, str(path))
    elif (vit := vitmae_source(name)) is not None:  # a transformers ViTMAE folder: its decoder too, if it has one
        state, notes = _vitmae_state(model, *vit, full)
        full = any(k.startswith("decoder.") for k in state)
        notes = (load_pretraining_into if full else load_encoder_into)(model, state, name) + notes
    elif full:
        source = load_pretraining_model(name)
        notes = load_pretraining_into(model, source.state_dict(), name)
    else:
        notes = load_encoder_into(model, load_pretrained(name).state_dict(), name)
    what = "encoder, decoder and masking module" if full else "encoder (decoder and masking module fresh)"
    log(f"init: {what} from {name}" + (f"; adapted: {'; '.join(notes)}" if notes else ""))
