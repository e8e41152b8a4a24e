"""``save_pretrained``: write a Hub-ready weights folder (timm ``config.json``, safetensors, model card)."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .._atomic import check_target, owned_folder, write_folder, write_text
from .._files import CARD_NAME, CONFIG_NAME, PRETRAINING_NAME, WEIGHTS_NAME, sha256_file
from .._safetensors import (
    META_ARCHITECTURE,
    META_CONFIG,
    META_MODEL_ARGS,
    check_finite,
    weights_metadata,
    write_safetensors,
)
from .._state_dict import check_state
from .._version import __version__
from ..models import CLMAE, PretrainingConfig, default_pretrained_cfg, get_arch, list_models, norm_eps
from ..models.norm_eps import TIMM_NORM_EPS
from .card import write_model_card

# Encoder arguments that only change training (regularisation), never the weights' layout: left out of config.json.
_TRAINING_ONLY_ARGS = (
    "drop_rate",
    "drop_path_rate",
    "proj_drop_rate",
    "attn_drop_rate",
    "pos_drop_rate",
    "patch_drop_rate",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
)
# The keys of timm's pretrained_cfg that describe preprocessing and provenance (timm's own config.json keys).
_CFG_KEYS = (
    "input_size",
    "fixed_input_size",
    "interpolation",
    "crop_pct",
    "crop_mode",
    "mean",
    "std",
    "num_classes",
    "pool_size",
    "first_conv",
    "classifier",
    "license",
)
DEFAULT_LICENSE = "apache-2.0"

# The files a clmae weights folder may hold: what save_pretrained writes, and the run's train_config.json that
# ``clmae train`` / ``clmae export`` add.
WEIGHTS_FOLDER_FILES = frozenset({CONFIG_NAME, WEIGHTS_NAME, PRETRAINING_NAME, CARD_NAME, "train_config.json"})


def is_weights_folder(folder: str | Path) -> bool:
    """Whether ``folder`` is a clmae weights folder (only its files, and a ``config.json`` with a ``clmae`` section):
    one that ``clmae export`` and ``clmae convert`` may replace without ``--overwrite``."""
    return owned_folder(folder, WEIGHTS_FOLDER_FILES, lambda c: isinstance(c.get("clmae"), dict))


def save_weights_folder(model: nn.Module, folder: str | Path, *, overwrite: bool = False, **kwargs: Any) -> Path:
    """:func:`save_pretrained` as the commands write it: the folder whole or not at all (built beside ``folder``,
    then swapped in), and a ``folder`` holding anything but an earlier clmae weights folder refused unless
    ``overwrite`` (then replaced as a whole).

    Args:
        model: as for :func:`save_pretrained`.
        folder: output folder.
        overwrite: replace whatever ``folder`` holds (``--overwrite``).
        **kwargs: :func:`save_pretrained`'s keyword arguments.
    """
    check_target(folder, is_weights_folder, "a clmae-format weights folder", overwrite=overwrite)
    return write_folder(folder, lambda tmp: save_pretrained(model, tmp, **kwargs), what="weights folder")


def _structural_args(encoder: VisionTransformer) -> dict[str, Any]:
    """The ``VisionTransformer`` arguments that fix the state dict's keys and shapes, read off the module."""
    block = encoder.blocks[0]
    args: dict[str, Any] = {
        "img_size": list(encoder.patch_embed.img_size),
        "patch_size": encoder.patch_embed.patch_size[0],
        "in_chans": encoder.patch_embed.proj.in_channels,
        "embed_dim": encoder.embed_dim,
        "depth": len(encoder.blocks),
        "num_heads": block.attn.num_heads,
        "mlp_ratio": block.mlp.fc1.out_features / encoder.embed_dim,
        "qkv_bias": block.attn.qkv.bias is not None,
        "global_pool": encoder.global_pool,
        "class_token": encoder.cls_token is not None,
        "fc_norm": not isinstance(encoder.fc_norm, nn.Identity),
    }
    if args["img_size"][0] == args["img_size"][1]:
        args["img_size"] = args["img_size"][0]
    if not isinstance(getattr(block, "ls1", nn.Identity()), nn.Identity):
        args["init_values"] = 1e-5  # any value creates the LayerScale parameters; the weights overwrite it
    if not isinstance(getattr(block.attn, "q_norm", nn.Identity()), nn.Identity):
        args["qk_norm"] = True
    return args


def _infer_arch(encoder: VisionTransformer, timm_arch: str) -> str | None:
    """The clmae architecture an encoder was made from (same timm arch, image size, patch size and channels)."""
    args = _structural_args(encoder)
    m = re.search(r"patch(\d+)_(\d+)", timm_arch)
    if m is None:
        return None
    for name in list_models():
        spec = get_arch(name)
        probe = {"patch_size": int(m.group(1)), "img_size": int(m.group(2)), "in_chans": 3, **spec.model_args}
        if spec.timm_arch == timm_arch and all(args[k] == probe[k] for k in ("img_size", "patch_size", "in_chans")):
            return name
    return None


def _check_rebuild(architecture: str, model_args: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """Build ``timm.create_model(architecture, **model_args)`` on the meta device; its keys and shapes must match."""
    with torch.device("meta"):
        probe = timm.create_model(architecture, pretrained=False, num_classes=0, **model_args)
    check_state(
        probe,
        state,
        "this encoder",
        fix=f"timm.create_model({architecture!r}, **{model_args}) would not rebuild it; pass model_args=... with the "
        "arguments it was built with",
    )


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside ``torch.compile`` (``_orig_mod``) and DDP/FSDP-style (``module``) wrappers."""
    while not isinstance(model, (CLMAE, VisionTransformer)):
        if isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        elif isinstance(getattr(model, "module", None), nn.Module):
            model = model.module
        else:
            break
    return model


def _encoder_and_config(
    model: nn.Module, name: str | None
) -> tuple[VisionTransformer, str | None, PretrainingConfig | None]:
    if isinstance(model, CLMAE):
        return model.encoder, name or model.config.arch or None, model.config
    if isinstance(model, VisionTransformer):
        return model, name, None
    raise ValueError(
        f"save_pretrained takes a timm VisionTransformer (clmae.create_model) or a CLMAE pretraining model "
        f"(clmae.create_pretraining_model), got {type(model).__name__}"
    )


def _pretrained_cfg(encoder: VisionTransformer, timm_arch: str, license_: str) -> dict[str, Any]:
    src = dict(getattr(encoder, "pretrained_cfg", None) or {})
    cfg = {**default_pretrained_cfg(timm_arch), **{k: src[k] for k in _CFG_KEYS if src.get(k) is not None}}
    cfg.pop("architecture")
    cfg["input_size"] = [encoder.patch_embed.proj.in_channels, *encoder.patch_embed.img_size]
    cfg["num_classes"] = 0
    cfg["license"] = license_
    # A native timm state dict. Without this, timm (<= 1.0.29) keeps the base tag's custom_load=True (its augreg .npz
    # loader) when it merges this config with the architecture's default one.
    cfg["custom_load"] = False
    return {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}


def _to_storage(state: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies; floating-point tensors cast to ``dtype`` when given."""
    out = {}
    for k, v in state.items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            if dtype == torch.float16 and v.numel() and v.abs().max() > torch.finfo(torch.float16).max:
                raise ValueError(f"{k} has values beyond float16's range; save with dtype=torch.bfloat16 or None")
            v = v.to(dtype)
        out[k] = v.contiguous()
    return out


def save_pretrained(
    model: nn.Module,
    folder: str | Path,
    *,
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
    model_args: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write a Hub-ready weights folder that timm and clmae both load.

    The folder holds ``config.json`` (timm's format: ``architecture``, ``num_classes``, ``model_args``,
    ``pretrained_cfg``, plus a ``clmae`` section), ``model.safetensors`` (the encoder, exactly the keys
    ``timm.create_model(architecture, num_classes=0, **model_args)`` has), ``pretraining.safetensors`` (the whole
    pretraining model, only when given a :class:`~clmae.models.CLMAE`) and ``README.md`` (a Hub model card).

    Each safetensors file records in its metadata what ``config.json`` says of it -- ``clmae.architecture`` and
    ``clmae.model_args`` (JSON) in ``model.safetensors``, ``clmae.config`` (the pretraining config, JSON) in
    ``pretraining.safetensors`` -- and ``clmae.tensor_sha256``, the sha256 of each tensor's bytes (JSON). The
    loaders compare both: an edited ``config.json`` or damaged tensor data is an error naming the argument or the
    tensor. Files get the mode new files get from the umask (0644 by default; safetensors alone writes 0600).
    Weights with NaN or inf are refused.

    Args:
        model: a timm ``VisionTransformer`` from :func:`clmae.create_model` or a ``CLMAE`` from
            :func:`clmae.create_pretraining_model` (``torch.compile`` and DDP wrappers are unwrapped).
        folder: output folder (created; existing files of the same names are replaced).
        name: clmae architecture name; default: the pretrainer's, or inferred from the encoder's shape.
        metadata: model card facts: ``license`` (default ``apache-2.0``), ``datasets`` (list), ``metrics``
            (``{name: value}``), ``tags`` (list), ``description`` (markdown), ``repo_id`` and ``load_name`` (for
            usage snippets), ``method`` (``"clmae"``/``"mae"``, for a bare encoder).
        model_args: extra timm arguments needed to rebuild the encoder (rarely needed: the structural ones are
            read off the model and checked by rebuilding it on the meta device).
        dtype: store floating-point tensors in this dtype (``torch.float16`` halves the files); default: as they
            are. Loading casts them to the model's dtype. Nothing is written if a value does not fit the dtype.

    Returns:
        The folder.
    """
    metadata = dict(metadata or {})
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype (e.g. torch.float16), got {dtype!r}")
    model = _unwrap(model)
    encoder, name, config = _encoder_and_config(model, name)
    try:
        json.dumps([config.to_dict() if config else None, metadata, model_args])
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"the model's config, metadata and model_args must be JSON values to go into config.json: {e}"
        ) from e
    timm_arch = (encoder.pretrained_cfg or {}).get("architecture") if hasattr(encoder, "pretrained_cfg") else None
    if name is not None:
        timm_arch = get_arch(name).timm_arch
    if not timm_arch:
        raise ValueError("cannot tell the timm architecture of this encoder; pass name=<a clmae.list_models() name>")
    name = name or _infer_arch(encoder, timm_arch)
    args = _structural_args(encoder)
    if config is not None:
        # Encoder overrides the pretrainer was built with that the module does not show, e.g. act_layer.
        args.update({k: v for k, v in config.encoder_kwargs.items() if k not in args})
    args.update(model_args or {})
    args = {k: v for k, v in args.items() if k not in _TRAINING_ONLY_ARGS}
    if config is not None and not config.arch:  # built from its modules: record the encoder as it is, to rebuild it
        if not name:
            raise ValueError("cannot tell which clmae architecture this encoder is; pass name=<clmae.list_models()>")
        config = dataclasses.replace(config, arch=name, encoder_kwargs={**args, **config.encoder_kwargs})
    state = _to_storage(encoder.state_dict(), dtype)
    _check_rebuild(timm_arch, args, state)
    full = _to_storage(model.state_dict(), dtype) if isinstance(model, CLMAE) else None  # all checks before writing
    check_finite(full if full is not None else state, "the model to save")
    # What config.json says, recorded in the weights files too (with each tensor's sha256): the loaders compare.
    args = json.loads(json.dumps(args))  # as config.json will hold them (tuples -> lists)

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder: give save_pretrained a folder to write the weights into")
    folder.mkdir(parents=True, exist_ok=True)
    license_ = metadata.get("license", DEFAULT_LICENSE)
    method = config.method if config else metadata.get("method")
    encoder_meta = weights_metadata(state, **{META_ARCHITECTURE: timm_arch, META_MODEL_ARGS: args})
    write_safetensors(state, folder / WEIGHTS_NAME, encoder_meta)
    files = [WEIGHTS_NAME]
    if full is not None:
        write_safetensors(full, folder / PRETRAINING_NAME, weights_metadata(full, **{META_CONFIG: config.to_dict()}))
        files.append(PRETRAINING_NAME)

    cfg = {
        "architecture": timm_arch,
        "num_classes": 0,
        "num_features": encoder.num_features,
        "global_pool": encoder.global_pool,
        "model_args": args,
        "pretrained_cfg": _pretrained_cfg(encoder, timm_arch, license_),
        "clmae": {
            "arch": name,
            "method": method,
            "version": __version__,
            "datasets": list(metadata.get("datasets") or []),
            "metrics": dict(metadata.get("metrics") or {}),
            "storage_dtype": str(next((v.dtype for v in state.values() if v.is_floating_point()), "")).replace(
                "torch.", ""
            ),
            "config": config.to_dict() if config else None,
        },
    }
    eps = norm_eps(encoder)
    if eps is not None and eps != TIMM_NORM_EPS:  # timm's config has no place for it: build_from_config sets it
        cfg["clmae"]["norm_eps"] = eps
    write_text(folder / CONFIG_NAME, json.dumps(cfg, indent=2) + "\n", what="config")
    checksums = {f: sha256_file(folder / f) for f in (CONFIG_NAME, *files)}
    write_model_card(folder, cfg, metadata, checksums)
    return folder
