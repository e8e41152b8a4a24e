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

The run's architecture comes from the weights' ``config.json`` (:func:`init_architecture`): a ViTMAE config (widths,
depths, heads, MLP size, patch and image size, channels, ``layer_norm_eps``; the decoder's too when it has one), a
clmae one (the recorded pretraining config) or a timm one (the model it builds), so no model argument has to be typed;
``model_kwargs`` given for ``img_size``, ``patch_size`` or ``in_chans`` are kept (the weights are adapted), any other
that differs from the weights' is refused, naming it. A bare ``.safetensors`` file has no config: the run's
architecture is used. When the weights' preprocessing (a ViTMAE processor's ``image_mean``/``image_std``, timm's
``pretrained_cfg`` mean/std) differs from the run's normalisation, one line says so (:func:`preprocessing_note`).

The spec is read as :func:`clmae.load_pretrained` reads it (:func:`clmae.hub.parse_spec`), with two additions that
only training needs: the ``pretraining:`` prefix and bare ``.safetensors`` files (the run supplies the architecture).
An encoder of another image size, patch size or channel count is adapted by the shared loader
(:func:`clmae.hub.load_encoder_state`) as timm adapts pretrained weights: positions with ``resample_abs_pos_embed``,
the patch embedding with ``resample_patch_embed`` (patch size) and ``adapt_input_conv`` (channels), each with a log
line. The curriculum starts at the beginning of the new run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .._config_json import read_config
from .._files import CONFIG_NAME
from .._safetensors import read_safetensors
from .._state_dict import check_state
from ..hub import load_encoder_state, load_pretraining_model, parse_spec, read_encoder
from ..hub.load import build_from_config
from ..hub.resolve import PRETRAINING_PREFIX
from ..hub.vitmae import config_of, has_decoder, pick_arch, preprocessing_of, read_clmae_state, structure_of
from ..hub.vitmae_map import decoder_fields, encoder_args, norm_eps_of
from ..models import CLMAE, PretrainingConfig, norm_eps
from .config import TrainConfig

_FIX = "init= needs weights of the run's architecture (embed_dim, depth, heads); pick a matching model"
# Model arguments a run may set differently from the weights it starts from: the loader adapts the weights to them.
ADAPTED = ("img_size", "patch_size", "in_chans")
_DECODER_FIELDS = ("decoder_embed_dim", "decoder_depth", "decoder_num_heads")
_MASKER_FIELDS = ("masker_depth", "masker_num_heads", "masker_mlp_ratio", "masker_norm_eps")


@dataclass
class SourceModel:
    """The architecture and preprocessing that a weight's ``config.json`` records.

    Attributes:
        arch: the clmae architecture closest to it (:func:`clmae.hub.vitmae.pick_arch`, or the one recorded).
        model_kwargs: the run's ``model_kwargs`` that make ``arch`` the weights' architecture (encoder; decoder and
            masking module where the weights hold them).
        mean: the weights' preprocessing mean (``None`` if the config gives none).
        std: as ``mean``.
    """

    arch: str
    model_kwargs: dict[str, Any]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None


def _timm_structure(cfg: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A timm ``config.json``'s encoder as a clmae architecture and overrides (built on the meta device)."""
    with torch.device("meta"):
        encoder = build_from_config(cfg)
    arch, kwargs = pick_arch(structure_of(encoder))
    eps = norm_eps(encoder)
    if eps is not None and eps != 1e-6:  # 1e-6 is timm's (and PretrainingConfig's) default
        kwargs["norm_eps"] = eps
    return arch, kwargs


def read_source_model(spec: str, method: str = "clmae") -> SourceModel | None:
    """What ``init=spec`` fixes of the run: the weights' architecture and preprocessing, from their ``config.json``;
    ``None`` for a bare ``.safetensors`` file (no config: the run's architecture is used).

    Args:
        spec: the ``init=`` value.
        method: the run's method: a whole CL-MAE model's masking module fixes the masking module's size too.
    """
    weights = parse_spec(spec, prefix=True, bare=True)
    src = weights.source
    if weights.file is not None:
        return None
    if (hf := config_of(src)) is not None:  # transformers ViTMAE: its decoder is loaded whenever it has one
        arch, kwargs = pick_arch(encoder_args(hf))
        kwargs["norm_eps"] = norm_eps_of(hf)
        if has_decoder(src):
            kwargs.update({k: v for k, v in decoder_fields(hf).items() if k in _DECODER_FIELDS})
        pre = preprocessing_of(src, hf, None, None)
        return SourceModel(arch, kwargs, tuple(pre["mean"]), tuple(pre["std"]))
    cfg = read_config(src.file(CONFIG_NAME, None, None, (CONFIG_NAME, src.encoder_file())))
    pre = cfg.get("pretrained_cfg") or {}
    mean, std = (tuple(pre[k]) if pre.get(k) else None for k in ("mean", "std"))
    recorded = (cfg.get("clmae") or {}).get("config")
    if not recorded:  # timm's config.json (or clmae's of an encoder alone)
        return SourceModel(*_timm_structure(cfg), mean, std)
    pretraining = PretrainingConfig.from_dict(recorded)
    kwargs = {**pretraining.encoder_kwargs, "norm_eps": pretraining.norm_eps}
    if weights.whole:  # the decoder (and the masking module) are loaded too
        fields = _DECODER_FIELDS + (_MASKER_FIELDS if method == "clmae" and pretraining.method == "clmae" else ())
        kwargs.update({k: getattr(pretraining, k) for k in fields if getattr(pretraining, k) is not None})
    return SourceModel(pretraining.arch, kwargs, mean, std)


def _same(a: Any, b: Any) -> bool:
    """Model argument values equal as the model reads them (``28`` and ``[28, 28]``, ``4`` and ``4.0``)."""
    if isinstance(a, (list, tuple)) and len(set(a)) == 1 and not isinstance(b, (list, tuple)):
        a = a[0]
    if isinstance(b, (list, tuple)) and len(set(b)) == 1 and not isinstance(a, (list, tuple)):
        b = b[0]
    return list(a) == list(b) if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) else a == b


def init_architecture(cfg: TrainConfig, log: Callable[[str], None] = print) -> TrainConfig:
    """``cfg`` with the architecture of the weights ``init=`` names (the module docstring): ``model`` and the
    architecture's ``model_kwargs`` from their ``config.json``; ``cfg`` itself without ``init=`` or for a bare file.

    Raises:
        ValueError: a ``model_kwargs`` value (other than ``img_size``, ``patch_size``, ``in_chans``) that differs from
            the weights', named.
    """
    if not cfg.init:
        return cfg
    source = read_source_model(cfg.init, cfg.method)
    if source is None:
        return cfg
    given = cfg.model_kwargs
    for key, value in source.model_kwargs.items():
        if key in given and key not in ADAPTED and not _same(given[key], value):
            raise ValueError(
                f"init: the run's model arguments and {cfg.init} do not match: it has {key}={value!r}, the run asks "
                f"for model_kwargs.{key}={given[key]!r}; drop model_kwargs.{key} (init= takes the architecture from "
                "the weights' config.json)"
            )
    new = dataclasses.replace(cfg, model=source.arch, model_kwargs={**source.model_kwargs, **given})
    if new.pretraining_config(check=False) != cfg.pretraining_config(check=False):
        args = ", ".join(f"{k}={v}" for k, v in sorted(source.model_kwargs.items()))
        log(f"init: architecture of {cfg.init}: {source.arch}" + (f" with {args}" if args else ""))
    new.pretraining_config(check=False)  # its values; the trainer sizes and builds it next
    return new


def preprocessing_note(spec: str, mean: Sequence[float], std: Sequence[float]) -> str | None:
    """One line when the weights ``init=spec`` names were preprocessed otherwise than the run's ``mean``/``std``;
    ``None`` when they agree or record none."""
    source = read_source_model(spec)
    if source is None or source.mean is None or source.std is None:
        return None
    ours = [float(v) for v in mean], [float(v) for v in std]
    theirs = [float(v) for v in source.mean], [float(v) for v in source.std]
    if len(theirs[0]) != len(ours[0]):  # another channel count: compared as the loader fits it (channel average)
        theirs = tuple([sum(v) / len(v)] * len(ours[0]) for v in theirs)
    if all(abs(a - b) <= 5e-4 for x, y in zip(ours, theirs) for a, b in zip(x, y)):  # 3-digit rounded statistics
        return None
    return (
        f"init: {spec} was pretrained on images normalised with mean {_fmt(source.mean)}, std {_fmt(source.std)}; "
        f"this run normalises with mean {_fmt(mean)}, std {_fmt(std)}, so the weights start on inputs shifted from "
        "theirs"
    )


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


def load_encoder_into(model: CLMAE, state: dict[str, torch.Tensor], where: str) -> list[str]:
    """Load encoder weights (timm keys) into ``model.encoder``, adapting channels, patch size and positions.

    Returns:
        What was adapted, one phrase each.
    """
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
    weights = parse_spec(spec, prefix=True, bare=True)
    name, full, src = weights.name, weights.whole, weights.source
    if weights.file is not None:  # tensors only: the run's model is their architecture
        state = read_safetensors(weights.file)  # checked: recorded tensor digests, no NaN/inf
        full = full or any(k.startswith("encoder.") for k in state)
        notes = (load_pretraining_into if full else load_encoder_into)(model, state, name)
    elif (hf := config_of(src)) is not None:  # a transformers ViTMAE: its decoder too, if it has one
        state, notes = _vitmae_state(model, src, hf, full)
        full = any(k.startswith("decoder.") for k in state)
        if not full:  # a ViTMAEModel: the encoder's own keys
            state = {k.removeprefix("encoder."): v for k, v in state.items()}
        notes = (load_pretraining_into if full else load_encoder_into)(model, state, name) + notes
    elif full:
        notes = load_pretraining_into(model, load_pretraining_model(src).state_dict(), name)
    else:
        notes = load_encoder_into(model, read_encoder(src).state, name)
    what = "encoder, decoder and masking module" if full else "encoder (decoder and masking module fresh)"
    log(f"init: {what} from {name}" + (f"; adapted: {'; '.join(notes)}" if notes else ""))
