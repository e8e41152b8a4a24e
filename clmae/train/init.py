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

The spec is read as :func:`clmae.load_pretrained` reads it (:func:`clmae.hub.parse_spec`), with two additions that
only training needs: the ``pretraining:`` prefix and bare ``.safetensors`` files (the run supplies the architecture).
An encoder of another image size, patch size or channel count is adapted by the shared loader
(:func:`clmae.hub.load_encoder_state`) as timm adapts pretrained weights: positions with ``resample_abs_pos_embed``,
the patch embedding with ``resample_patch_embed`` (patch size) and ``adapt_input_conv`` (channels), each with a log
line. The curriculum starts at the beginning of the new run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._io import read_safetensors
from ..hub.resolve import PRETRAINING_PREFIX
from ..models import CLMAE, norm_eps

_FIX = "init= needs weights of the run's architecture (embed_dim, depth, heads); pick a matching model"


def load_encoder_into(model: CLMAE, state: dict[str, torch.Tensor], where: str) -> list[str]:
    """Load encoder weights (timm keys) into ``model.encoder``, adapting channels, patch size and positions.

    Returns:
        What was adapted, one phrase each.
    """
    from ..hub import load_encoder_state

    notes: list[str] = []
    load_encoder_state(model.encoder, state, where, optional=("head.",), fix=_FIX, notes=notes)
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
    from ..hub import load_pretraining_model, parse_spec, read_encoder
    from ..hub.vitmae import config_of

    weights = parse_spec(spec, prefix=True, bare=True)
    name, full, src = weights.name, weights.whole, weights.source
    if weights.file is not None:  # tensors only: the run's model is their architecture
        state = read_safetensors(weights.file)  # checked: recorded tensor digests, no NaN/inf
        full = full or any(k.startswith("encoder.") for k in state)
        notes = (load_pretraining_into if full else load_encoder_into)(model, state, name)
    elif (hf := config_of(src)) is not None:  # a transformers ViTMAE: its decoder too, if it has one
        state, notes = _vitmae_state(model, src, hf, full)
        full = any(k.startswith("decoder.") for k in state)
        notes = (load_pretraining_into if full else load_encoder_into)(model, state, name) + notes
    elif full:
        notes = load_pretraining_into(model, load_pretraining_model(src).state_dict(), name)
    else:
        notes = load_encoder_into(model, read_encoder(src).state, name)
    what = "encoder, decoder and masking module" if full else "encoder (decoder and masking module fresh)"
    log(f"init: {what} from {name}" + (f"; adapted: {'; '.join(notes)}" if notes else ""))
