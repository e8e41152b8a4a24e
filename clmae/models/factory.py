"""``create_encoder`` (a plain timm encoder) and ``create_pretraining_model`` (encoder + decoder + masking module).

Architectures only: names of published weights go through :func:`clmae.create_model`, which knows the registry."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import timm
import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..data.transforms.numbers import fit_channels
from ._init import init_linear_and_norm
from ._registry import get_arch
from ._size import SIZE_ARGS, check_fits, stack_numel, too_large
from .config import PretrainingConfig, check_encoder_kwargs
from .decoder import MAEDecoder
from .masker import MaskingModule
from .methods import METHOD_TITLES
from .norm_eps import set_norm_eps
from .pos_embed import sincos_2d
from .pretrainer import CLMAE


@contextmanager
def _explain(what: str, args: dict[str, Any]) -> Iterator[None]:
    """Turn a failure deep inside a module's constructor into a ``ValueError`` that names the arguments."""
    try:
        yield
    except (TypeError, AssertionError, RuntimeError, ValueError) as e:
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        given = ", ".join(f"{k}={v!r}" for k, v in args.items()) or "its defaults"
        raise ValueError(f"cannot build {what} with {given}: {detail}; change these model arguments") from e


def _set_sincos(encoder: VisionTransformer) -> None:
    grid = encoder.patch_embed.grid_size
    if grid[0] != grid[1]:
        raise ValueError(f"clmae models need a square patch grid, got {grid}")
    with torch.no_grad():
        encoder.pos_embed.copy_(sincos_2d(encoder.embed_dim, grid[0], cls_token=True)[None])


def create_encoder(name: str, **kwargs: Any) -> VisionTransformer:
    """A randomly initialised encoder: a plain ``timm`` ``VisionTransformer`` with no classifier head.

    Positions are MAE's fixed 2-D sin-cos values (left trainable, as timm's are, for fine-tuning). Use
    :func:`clmae.create_model` for names of published weights too.

    Args:
        name: an architecture from :func:`clmae.list_models`.
        **kwargs: timm ``VisionTransformer`` arguments that override the architecture's (``num_classes``,
            ``drop_path_rate``, ``img_size``, ``global_pool``, ...).

    Returns:
        The timm ``VisionTransformer``, in train mode.
    """
    spec = get_arch(name)
    check_encoder_kwargs(kwargs)
    given = {k: v for k, v in kwargs.items() if k != "pretrained_cfg"}
    check_fits(f"the {name} encoder", lambda a: encoder_numel(name, a), given)
    args = {**spec.model_args, "num_classes": 0, **kwargs}
    args.setdefault("pretrained_cfg", spec.full_pretrained_cfg())
    with _explain(f"the {name} encoder", given):
        model = timm.create_model(spec.timm_arch, pretrained=False, **args)
    fit_input_cfg(model, model.pretrained_cfg)  # true when img_size / in_chans were overridden
    _set_sincos(model)
    return model


def fit_input_cfg(model: VisionTransformer, cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` (a timm ``pretrained_cfg``) made true for ``model``'s input, in place: ``input_size`` from its patch
    embedding; ``mean``/``std`` of another channel count (ImageNet's three values for a greyscale model) fitted to it,
    their average repeated per channel."""
    in_chans = model.patch_embed.proj.in_channels
    cfg["input_size"] = (in_chans, *model.patch_embed.img_size)
    for key in ("mean", "std"):
        if key in cfg and len(cfg[key]) != in_chans:
            cfg[key] = fit_channels(cfg[key], in_chans)
    return cfg


def _meta_encoder(name: str, kwargs: dict[str, Any]) -> tuple[int, VisionTransformer]:
    """The encoder's number count and its meta-device stand-in, see :func:`meta_timm`."""
    spec = get_arch(name)
    args = {**spec.model_args, "num_classes": 0, **kwargs, "pretrained_cfg": spec.full_pretrained_cfg()}
    return meta_timm(spec.timm_arch, args)


def meta_timm(arch: str, args: dict[str, Any]) -> tuple[int, nn.Module]:
    """Number count of ``timm.create_model(arch, **args)`` and its meta-device stand-in (at most one block when
    ``depth`` is given), see :mod:`._size`."""
    args = dict(args)
    depth = args.pop("depth", None)
    if depth is None:  # the architecture's own depth (timm's), a few dozen blocks at most
        return stack_numel(lambda d: timm.create_model(arch, pretrained=False, **args), 1)
    return stack_numel(lambda d: timm.create_model(arch, pretrained=False, depth=d, **args), depth)


def check_timm_fits(arch: str, args: dict[str, Any], given: dict[str, Any]) -> None:
    """A ``ValueError`` naming the size argument if ``timm.create_model(arch, **args)`` would not fit the free
    memory; ``given`` are the arguments to name (the rest of ``args`` stays as it is)."""

    def numel(chosen: dict[str, Any]) -> float | None:
        try:
            return meta_timm(arch, {**{k: v for k, v in args.items() if k not in given}, **chosen})[0]
        except (TypeError, AssertionError, RuntimeError, ValueError, OverflowError) as e:
            return too_large(e)

    check_fits(f"the {arch} encoder", numel, {k: v for k, v in given.items() if k != "pretrained_cfg"})


def encoder_numel(name: str, kwargs: dict[str, Any]) -> float | None:
    """Numbers (parameters and buffers) held by ``create_encoder(name, **kwargs)``, found without building it;
    ``inf`` if a tensor would be larger than torch can address, ``None`` if it cannot be built (the build then says
    why)."""
    try:
        return _meta_encoder(name, kwargs)[0]
    except (TypeError, AssertionError, RuntimeError, ValueError, OverflowError) as e:
        return too_large(e)


def _with_arch_decoder(cfg: PretrainingConfig) -> PretrainingConfig:
    """``cfg`` with the architecture's decoder where none is asked for."""
    spec = get_arch(cfg.arch)
    return dataclasses.replace(
        cfg,
        decoder_embed_dim=cfg.decoder_embed_dim or spec.decoder_embed_dim,
        decoder_depth=spec.decoder_depth if cfg.decoder_depth is None else cfg.decoder_depth,
        decoder_num_heads=cfg.decoder_num_heads or spec.decoder_num_heads,
    )


def pretraining_numel(cfg: PretrainingConfig) -> float | None:
    """Numbers (parameters and buffers) held by ``create_pretraining_model(cfg)``, found without building it (as
    :func:`encoder_numel`)."""
    cfg = _with_arch_decoder(cfg)
    try:
        count, encoder = _meta_encoder(cfg.arch, cfg.encoder_kwargs)
        grid, width = encoder.patch_embed.num_patches, encoder.embed_dim
        patch, chans = encoder.patch_embed.patch_size[0], encoder.patch_embed.proj.in_channels
        count += stack_numel(
            lambda d: MAEDecoder(grid, width, cfg.decoder_embed_dim, d, cfg.decoder_num_heads, patch, chans),
            cfg.decoder_depth,
        )[0]
        if cfg.method == "clmae":
            count += stack_numel(
                lambda d: MaskingModule(grid, width, d, cfg.masker_num_heads, cfg.masker_mlp_ratio),
                cfg.masker_depth,
            )[0]
    except (TypeError, AssertionError, RuntimeError, ValueError, OverflowError) as e:
        return too_large(e)
    return count


def check_pretraining_fits(
    cfg: PretrainingConfig, device: str | torch.device = "cpu", copies: int = 1, purpose: str = "its weights"
) -> None:
    """A ``ValueError`` naming the size argument if ``copies`` float32 copies of the model ``cfg`` describes would
    not fit ``device``'s memory (see :func:`._size.check_fits`); nothing is allocated."""
    fields = {f.name: f.default for f in dataclasses.fields(PretrainingConfig)}
    own = {k: getattr(cfg, k) for k in SIZE_ARGS if k in fields and getattr(cfg, k) != fields[k]}
    given = {**cfg.encoder_kwargs, **own}
    enc_keys = set(cfg.encoder_kwargs)

    def numel(args: dict[str, Any]) -> int | None:
        values = {k: args.get(k, fields[k]) for k in own}
        encoder_kwargs = {k: v for k, v in args.items() if k in enc_keys}
        return pretraining_numel(dataclasses.replace(cfg, encoder_kwargs=encoder_kwargs, **values))

    what = f"the {METHOD_TITLES[cfg.method]} pretraining model of {cfg.arch}"
    check_fits(what, numel, {k: v for k, v in given.items() if k != "pretrained_cfg"}, device, copies, purpose)


def _init_mae_encoder(encoder: VisionTransformer) -> None:
    """MAE's initialisation (``models_mae.initialize_weights``) of the encoder."""
    init_linear_and_norm(encoder)
    # Patch embedding initialised like a Linear layer, not a convolution (MAE).
    w = encoder.patch_embed.proj.weight
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.normal_(encoder.cls_token, std=0.02)


def create_pretraining_model(
    name: str | PretrainingConfig, method: str = "clmae", *, check_size: bool = True, **kwargs: Any
) -> CLMAE:
    """Create a CL-MAE (or MAE baseline) pretraining model, initialised as MAE.

    Args:
        name: an architecture from :func:`clmae.list_models`, or a whole :class:`PretrainingConfig` (then
            ``method`` and ``kwargs`` are not taken).
        method: ``"clmae"`` (learned curriculum masks) or ``"mae"`` (uniform random masks; ``masker`` is ``None``).
        **kwargs: :class:`PretrainingConfig` fields (``mask_ratio``, ``norm_pix_loss``, ``decoder_depth``,
            ``masker_depth``, loss weights, ...) and encoder overrides as for :func:`create_encoder` (``embed_dim``,
            ``depth``, ``img_size``, ...).
        check_size: first check that its weights fit the CPU's memory (:func:`check_pretraining_fits`); ``False``
            where the caller has just checked it (the trainer sizes it once, for the device it trains on).

    Returns:
        A :class:`~clmae.models.pretrainer.CLMAE` whose ``config`` rebuilds it.
    """
    if isinstance(name, PretrainingConfig):
        if kwargs or method != "clmae":
            raise ValueError("give either a PretrainingConfig or an architecture name with keyword arguments")
        cfg = name
    else:
        cfg = PretrainingConfig.from_kwargs(name, method, **kwargs)  # values checked below, by building it
    if check_size:
        check_pretraining_fits(cfg)
    cfg = _with_arch_decoder(cfg)
    encoder = create_encoder(cfg.arch, **cfg.encoder_kwargs)
    _init_mae_encoder(encoder)
    set_norm_eps(encoder, cfg.norm_eps)
    encoder.pos_embed.requires_grad_(False)  # fixed positions: MAE keeps them out of training
    dec = {k: getattr(cfg, f"decoder_{k}") for k in ("embed_dim", "depth", "num_heads")}
    with _explain("the decoder", {f"decoder_{k}": v for k, v in dec.items()}):
        decoder = MAEDecoder(
            num_patches=encoder.patch_embed.num_patches,
            embed_dim=encoder.embed_dim,
            decoder_embed_dim=dec["embed_dim"],
            depth=dec["depth"],
            num_heads=dec["num_heads"],
            patch_size=encoder.patch_embed.patch_size[0],
            in_chans=encoder.patch_embed.proj.in_channels,
            norm_eps=cfg.norm_eps,
        )
    masker = None
    if cfg.method == "clmae":
        mask = {k: getattr(cfg, f"masker_{k}") for k in ("depth", "num_heads", "mlp_ratio", "norm_eps")}
        with _explain("the masking module", {f"masker_{k}": v for k, v in mask.items()}):
            masker = MaskingModule(
                encoder.patch_embed.num_patches,
                encoder.embed_dim,
                depth=mask["depth"],
                num_heads=mask["num_heads"],
                mlp_ratio=mask["mlp_ratio"],
                norm_eps=mask["norm_eps"],
            )
    return CLMAE(encoder, decoder, masker, cfg)


def check_config(cfg: PretrainingConfig) -> PretrainingConfig:
    """Build ``cfg``'s model on the ``meta`` device (no memory, no initialisation cost), so that a config that would
    not build fails before anything runs: a ``ValueError`` naming the arguments (unknown ``arch``, ``embed_dim`` not
    divisible by ``num_heads``, a model too large for the device, ...).

    Returns:
        ``cfg``.
    """
    with torch.device("meta"):
        model = create_pretraining_model(cfg)
    check_patch_grid(model)
    return cfg


def check_patch_grid(model: CLMAE) -> None:
    """A ``ValueError`` naming ``model_kwargs.img_size`` if ``model``'s images do not split into whole patches."""
    (h, w), p = model.img_size, model.patch_size
    if h % p or w % p:  # timm builds it (cutting the border off); patchify, the targets of the loss, cannot
        raise ValueError(
            f"img_size {h}x{w} is not divisible by the patch size {p}: set model_kwargs.img_size to a multiple of "
            f"{p} (e.g. {h // p * p or p})"
        )
