"""``load_pretrained`` (the encoder) and ``load_pretraining_model`` (the whole CL-MAE) from a weight spec
(:mod:`clmae.hub.resolve`), and the steps every weights loader of clmae shares: :func:`read_encoder` (a weight's
encoder tensors and config, clmae's, timm's or a ``transformers`` ViTMAE's), :func:`build_from_config` and
:func:`load_encoder_state` (which adapts channels, patch size and positions as timm adapts pretrained weights).
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from timm.models import adapt_input_conv as _timm_adapt_input_conv
from timm.models.vision_transformer import VisionTransformer

from .._config_json import read_config
from .._files import CONFIG_NAME, PRETRAINING_NAME
from .._safetensors import check_weights_config, read_safetensors
from .._state_dict import check_dtypes, check_state
from ..models import CLMAE, PretrainingConfig, create_pretraining_model, get_arch, list_models, set_norm_eps
from ..models.config import check_encoder_kwargs
from ..models.factory import SIZE_ARGS, check_timm_fits, fit_input_cfg
from . import vitmae, vitmae_map
from .resolve import (  # noqa: F401  (importable from here too, where they were first defined)
    CHECKPOINT_SUFFIXES,
    TRAIN_COMMAND,
    WHAT_LOADS,
    Source,
    parse_spec,
    resolve,
    resolve_weight_or_explain,
)

# timm >= 1.0.2x adapts from any channel count (``base_chans``); older timm assumes RGB weights.
_BASE_CHANS = "base_chans" in inspect.signature(_timm_adapt_input_conv).parameters


def _preprocessing(cfg: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json``'s ``pretrained_cfg`` as timm keeps it (JSON lists back to tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (cfg.get("pretrained_cfg") or {}).items()}


def build_from_config(cfg: dict[str, Any], **kwargs: Any) -> VisionTransformer:
    """A randomly initialised encoder as a weights folder's ``config.json`` describes it.

    ``timm.create_model(architecture, num_classes=..., **model_args, **kwargs)`` with the config's preprocessing as
    its ``pretrained_cfg``; an ``architecture`` that only clmae knows (e.g. ``vit_tiny_patch4_28``) is built from its
    timm base.

    Args:
        cfg: the ``config.json`` content (:func:`clmae._config_json.read_config`).
        **kwargs: timm arguments that override the config's (``num_classes``, ``img_size``, ``drop_path_rate``...).
    """
    check_encoder_kwargs(kwargs)
    arch = cfg["architecture"]
    args = {**cfg.get("model_args", {}), "num_classes": cfg.get("num_classes", 0), **kwargs}
    if not timm.is_model(arch) and arch in list_models():
        spec = get_arch(arch)
        arch, args = spec.timm_arch, {**spec.model_args, **args}
    if not timm.is_model(arch):
        raise ValueError(f"config.json names architecture {arch!r}, which neither timm nor clmae knows")
    args.setdefault("pretrained_cfg", {**_preprocessing(cfg), "architecture": arch})
    given = {**cfg.get("model_args", {}), **kwargs}  # what config.json and the caller chose: named if too large
    check_timm_fits(arch, args, {k: v for k, v in given.items() if k in SIZE_ARGS})
    try:
        model = timm.create_model(arch, pretrained=False, **args)
    except (RuntimeError, TypeError, ValueError, AssertionError) as e:
        raise ValueError(f"config.json does not describe a buildable timm model ({arch}, {args}): {e}") from e
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"config.json architecture {arch!r} is not a timm VisionTransformer")
    eps = (cfg.get("clmae") or {}).get("norm_eps")
    if eps is not None:  # a LayerNorm epsilon other than timm's (weights from transformers ViTMAE)
        set_norm_eps(model, eps)
    # Keep the advertised input size true when img_size / in_chans were overridden.
    model.pretrained_cfg["input_size"] = (model.patch_embed.proj.in_channels, *model.patch_embed.img_size)
    return model


def read_weights(
    path: str | Path, cfg: dict[str, Any] | None, config_path: str | Path | None, *, verified: bool = False
) -> dict[str, torch.Tensor]:
    """A weights file's tensors, checked against its ``config.json`` and itself.

    What :func:`clmae.save_pretrained` recorded in the file's metadata (the architecture, its model arguments, the
    pretraining config) must equal what ``config.json`` says; each tensor must match its recorded sha256 and hold no
    NaN/inf. Files without that metadata (older folders, other tools) get the NaN/inf check only.

    Args:
        path: ``model.safetensors`` or ``pretraining.safetensors``.
        cfg: the ``config.json`` content (``None``: no comparison).
        config_path: where ``cfg`` was read, for the message.
        verified: the file already matched a registry sha256: the tensor checks are skipped.

    Raises:
        ValueError: naming the file and the differing argument or the damaged tensor.
    """
    if cfg is not None:
        check_weights_config(path, cfg, config_path or CONFIG_NAME)
    return read_safetensors(path, verify=not verified)


def adapt_input_conv(in_chans: int, weight: torch.Tensor, base_chans: int) -> torch.Tensor:
    """Patch-embedding weights of ``base_chans`` input channels for ``in_chans`` channels, as timm's
    ``adapt_input_conv`` adapts them: summed for one channel, otherwise repeated and scaled by ``base_chans /
    in_chans`` (so that a constant image gives the same output)."""
    if _BASE_CHANS or base_chans == 3:
        return _timm_adapt_input_conv(in_chans, weight, **({"base_chans": base_chans} if _BASE_CHANS else {}))
    # timm before base_chans: the same rule, written out for a source that is not RGB.
    if in_chans == 1:
        return weight.float().sum(1, keepdim=True).to(weight.dtype)
    repeated = weight.float().repeat(1, -(-in_chans // base_chans), 1, 1)[:, :in_chans]
    return (repeated * (base_chans / float(in_chans))).to(weight.dtype)


def adapt_encoder_state(
    model: VisionTransformer, state: dict[str, torch.Tensor], *, antialias: bool = True
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Encoder weights (timm keys) fitted to ``model``'s input as timm fits pretrained weights (its
    ``_builder.load_pretrained`` and ``checkpoint_filter_fn``): the channels with ``adapt_input_conv``, the patch
    size with ``resample_patch_embed``, the positions with ``resample_abs_pos_embed``.

    Args:
        model: the encoder the weights go into.
        state: the weights; not changed.
        antialias: antialiasing when the positions are resampled (``transformers`` ViTMAE resamples without).

    Returns:
        The adapted weights (tensors of another width are left as they are, for the key check to name) and what was
        adapted, one phrase each.
    """
    state, notes = dict(state), []
    weight, target = state.get("patch_embed.proj.weight"), model.patch_embed.proj.weight
    if weight is not None and weight.ndim == 4 and weight.shape != target.shape and weight.shape[0] == target.shape[0]:
        weight = weight.to(target.dtype)  # adapted in the model's precision (float16 files load as float32)
        have, want = weight.shape[1], target.shape[1]
        if have != want:
            notes.append(f"input channels {have} -> {want} (timm adapt_input_conv)")
            weight = adapt_input_conv(want, weight, base_chans=have)
        if weight.shape[-2:] != target.shape[-2:]:
            size = tuple(target.shape[-2:])
            notes.append(f"patch size {tuple(weight.shape[-2:])} -> {size} (timm resample_patch_embed)")
            weight = resample_patch_embed(weight, list(size))
        state["patch_embed.proj.weight"] = weight
    pos = state.get("pos_embed")
    if pos is not None and model.pos_embed is not None and pos.shape != model.pos_embed.shape:
        notes.append(f"positions {pos.shape[1]} -> {model.pos_embed.shape[1]} (timm resample_abs_pos_embed)")
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        grid = list(model.patch_embed.grid_size)
        pos = pos.to(model.pos_embed.dtype)
        state["pos_embed"] = resample_abs_pos_embed(pos, grid, num_prefix_tokens=prefix, antialias=antialias)
    return state, notes


def load_encoder_state(
    model: VisionTransformer,
    state: dict[str, torch.Tensor],
    where: str,
    optional: tuple[str, ...] = ("head.",),
    fix: str | None = None,
    *,
    antialias: bool = True,
    notes: list[str] | None = None,
) -> VisionTransformer:
    """Load encoder weights (timm keys) into ``model``, adapted to its input channels, patch size and image size
    (:func:`adapt_encoder_state`).

    Args:
        model: the encoder (e.g. from :func:`build_from_config` or :func:`clmae.create_model`).
        state: the weights.
        where: the weights' origin, for the error message.
        optional: key prefixes of ``model`` the weights may lack (a fresh classifier head).
        fix: what the error message tells to do about a mismatch.
        antialias: antialiasing when the positions are resampled.
        notes: a list that receives what was adapted, one phrase each.

    Returns:
        ``model``.

    Raises:
        ValueError: keys or shapes differ (beyond what is adapted), naming them.
    """
    check_dtypes(model, state, where)  # before adapt_encoder_state casts the patch embedding
    state, adapted = adapt_encoder_state(model, state, antialias=antialias)
    check_state(model, state, where, optional=optional, fix=fix)
    model.load_state_dict(state, strict=False)
    if notes is not None:
        notes.extend(adapted)
    return model


@dataclass
class EncoderWeights:
    """A weight's encoder as :func:`read_encoder` reads it: its tensors (timm keys) and the config of the model they
    fit, clmae's/timm's ``config.json`` or a ``transformers`` ViTMAE one.

    Attributes:
        source: where the files came from.
        config: the ``config.json`` content (a ViTMAE config with ``ViTMAEConfig``'s defaults filled in).
        state: the encoder's weights, timm keys.
        file: the weights file (``None`` for a sharded ViTMAE).
        preprocessing: for a ViTMAE, timm's preprocessing equal to its image processor; ``None`` otherwise.
    """

    source: Source
    config: dict[str, Any]
    state: dict[str, torch.Tensor] = field(repr=False)
    file: Path | None = None
    preprocessing: dict[str, Any] | None = None

    @property
    def is_vitmae(self) -> bool:
        """Whether the weights are a ``transformers`` ViTMAE's."""
        return self.preprocessing is not None

    @property
    def arch(self) -> str:
        """The clmae (or timm) architecture name of the weights."""
        if self.is_vitmae:
            return vitmae.pick_arch(vitmae_map.encoder_args(self.config))[0]
        return (self.config.get("clmae") or {}).get("arch") or self.config["architecture"]

    @property
    def antialias(self) -> bool:
        """Antialiasing when the positions are resampled: ViTMAE's ``interpolate_pos_encoding`` uses none."""
        return not self.is_vitmae

    def build(self, **kwargs: Any) -> VisionTransformer:
        """The encoder with random weights, as the config describes it; ``kwargs`` are timm overrides."""
        if self.is_vitmae:
            return vitmae.build_encoder(self.config, self.preprocessing, **kwargs)
        return build_from_config(self.config, **kwargs)

    def builder(self, overrides: dict[str, Any]) -> Callable[..., VisionTransformer]:
        """:meth:`build` with ``overrides`` under any later keyword arguments."""
        return lambda **kw: self.build(**{**overrides, **kw})

    def encoder(self, **kwargs: Any) -> VisionTransformer:
        """The pretrained encoder in eval mode, built with timm ``kwargs`` (input adapted), its ``pretrained_cfg``
        recording the preprocessing and where the weights came from."""
        src = self.source
        where = str(self.file or src.name)
        model = load_encoder_state(self.build(**kwargs), self.state, where, antialias=self.antialias)
        if self.is_vitmae:
            vitmae.record_source(model, src)
            pcfg = model.pretrained_cfg
        else:
            cfg = self.config
            pcfg = {**_preprocessing(cfg), "architecture": cfg["architecture"], "source": src.name}
            if src.repo_id is not None:
                pcfg.update(hf_hub_id=src.repo_id, revision=src.revision)
            if src.entry is not None:
                pcfg.update(tag=src.entry.tag, method=src.entry.method)
            elif cfg.get("clmae", {}).get("method"):
                pcfg["method"] = cfg["clmae"]["method"]
            pcfg["num_classes"] = model.num_classes
        fit_input_cfg(model, pcfg)  # as create_model does
        model.pretrained_cfg = model.default_cfg = pcfg  # timm keeps default_cfg as an alias
        return model.eval()


def read_encoder(
    src: Source, cache_dir: str | Path | None = None, local_files_only: bool | None = None
) -> EncoderWeights:
    """A weight's ``config.json`` and encoder tensors (timm keys), fetched and checked.

    The encoder comes from ``model.safetensors``, from the ``encoder.*`` tensors of ``pretraining.safetensors``
    where the spec names that file or the weight stores no separate encoder file (:meth:`Source.encoder_file`), or
    from a ``transformers`` ViTMAE's weights, its keys mapped onto timm's.

    Args:
        src: where the weight's files come from (:func:`clmae.hub.resolve.resolve`).
        cache_dir: Hub cache folder.
        local_files_only: never touch the network.
    """
    filename = src.encoder_file()
    needed = (CONFIG_NAME, filename)
    config_path = src.file(CONFIG_NAME, cache_dir, local_files_only, needed)
    if (hf := vitmae.vitmae_config(config_path)) is not None:
        state, _ = vitmae.read_clmae_state(src, cache_dir, local_files_only)
        preprocessing = vitmae.preprocessing_of(src, hf, cache_dir, local_files_only)
        return EncoderWeights(src, hf, state, None, preprocessing)
    cfg = read_config(config_path)
    path = src.file(filename, cache_dir, local_files_only, needed)
    state = read_weights(path, cfg, config_path, verified=src.verified(filename))
    if filename == PRETRAINING_NAME:
        state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        if not state:
            raise ValueError(f"{path} holds no encoder.* tensors: it is not a pretraining model's weights")
    return EncoderWeights(src, cfg, state, path)


def load_pretrained(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    **kwargs: Any,
) -> VisionTransformer:
    """Load a pretrained encoder, ready to extract features: a timm ``VisionTransformer`` in eval mode.

    :func:`clmae.create_model` with ``pretrained=True`` gives the same model in train mode (timm's contract), for
    fine-tuning. No hook is attached: check a batch explicitly with :func:`clmae.check_input`.

    Args:
        name_or_path: a registry name or alias (``"vit_b"``, ``"vit_base_patch16_224.mae"``; see
            :func:`clmae.list_pretrained`), ``"hf-hub:org/repo[@revision]"``, ``"local-dir:/path"``, a folder or its
            ``model.safetensors`` / ``pretraining.safetensors`` file.
        revision: Hub revision (default: the registry's pinned commit; ``main`` for hf-hub names).
        cache_dir: Hub cache folder (default: ``$HF_HUB_CACHE``).
        local_files_only: never touch the network; ``None`` follows ``HF_HUB_OFFLINE``.
        **kwargs: timm model arguments. The weights are adapted as ``timm.create_model(..., pretrained=True)``
            adapts them: ``in_chans`` (patch embedding, timm's ``adapt_input_conv``), ``patch_size``
            (``resample_patch_embed``), ``img_size`` (positions, ``resample_abs_pos_embed``); ``num_classes`` adds a
            fresh head; ``drop_path_rate``, ``global_pool``...

    Returns:
        The encoder, with ``model.pretrained_cfg`` from the weights' ``config.json``.
    """
    check_encoder_kwargs(kwargs)  # before any file is fetched
    src = parse_spec(name_or_path, revision).source
    return read_encoder(src, cache_dir, local_files_only).encoder(**kwargs)


def load_pretraining_model(
    name_or_path: str | os.PathLike | Source,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
) -> CLMAE:
    """Rebuild the whole pretraining model (encoder, decoder, masking module) from ``pretraining.safetensors``.

    Args:
        name_or_path: as for :func:`load_pretrained` (``pretraining:`` before it is allowed), or a resolved
            :class:`~clmae.hub.resolve.Source`; the weights must include ``pretraining.safetensors``.
        revision: Hub revision.
        cache_dir: Hub cache folder.
        local_files_only: never touch the network.

    Returns:
        The :class:`~clmae.models.CLMAE` in eval mode (call ``.train()`` to continue pretraining).
    """
    src = name_or_path if isinstance(name_or_path, Source) else parse_spec(name_or_path, revision, prefix=True).source
    needed = (CONFIG_NAME, PRETRAINING_NAME)
    config_path = src.file(CONFIG_NAME, cache_dir, local_files_only, needed)
    if (hf := vitmae.vitmae_config(config_path)) is not None:  # a transformers ViTMAEForPreTraining folder
        return vitmae.load_pretraining(src, hf, cache_dir, local_files_only)
    cfg = read_config(config_path)
    config = (cfg.get("clmae") or {}).get("config")
    if not config:
        raise ValueError(
            f"{src.name} holds an encoder only (its config.json has no clmae.config): the decoder and masking module "
            "were not published; use load_pretrained() for the encoder"
        )
    path = src.file(PRETRAINING_NAME, cache_dir, local_files_only, needed)
    state = read_weights(path, cfg, config_path, verified=src.verified(PRETRAINING_NAME))
    model = create_pretraining_model(PretrainingConfig.from_dict(config))
    check_state(model, state, str(path))
    model.load_state_dict(state)
    return model.eval()


def load_pretraining(*args: Any, **kwargs: Any) -> CLMAE:
    """Deprecated name of :func:`load_pretraining_model` (easily confused with :func:`load_pretrained`)."""
    warnings.warn(
        "clmae.load_pretraining is deprecated; use clmae.load_pretraining_model", DeprecationWarning, stacklevel=2
    )
    return load_pretraining_model(*args, **kwargs)
