"""Frozen features of a data set, extracted in batches: the one extraction loop of evaluation, the demo and
``clmae extract`` (:func:`extract_features`, PIL images through a ``DataLoader``) and its tensor twin for uint8 images
held on the device (:func:`extract_tensor_features`); :mod:`clmae.eval.cache` keeps them per model + data +
preprocessing.

For a timm ``VisionTransformer`` one forward pass gives both features the protocols need, read after the encoder's
final LayerNorm (``forward_features``): ``cls``, the class token (MAE's linear probe), and ``avg``, the mean of the
patch tokens (CL-MAE's kNN). For raw pixels both are the flattened, normalised image.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._progress import progress
from ..data.transforms.identity import identity_at_model_size, normalize_uint8
from .data import EvalData
from .model import ResolvedModel

POOLS = ("cls", "avg")
FEATURES = ("cls", "avg", "pooled", "patch")


def data_config(model: ResolvedModel, encoder: nn.Module | None, data: EvalData) -> dict[str, Any]:
    """Preprocessing: the encoder's ``pretrained_cfg`` (timm's ``resolve_data_config``), the data's for raw pixels."""
    if encoder is None:
        return dict(data.default_cfg)
    cfg = timm.data.resolve_data_config(model=encoder)
    return {k: cfg[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode") if k in cfg}


@torch.no_grad()
def extract_features(
    encoder: nn.Module | None,
    dataset: Dataset,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
    desc: str | None = None,
    features: tuple[str, ...] = ("cls", "avg"),
) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
    """Features of every item of ``dataset``, in order: the one extraction loop of evaluation, the demo and
    ``clmae extract``.

    Args:
        encoder: a timm ``VisionTransformer``, or ``None`` for raw pixels (every feature is the flattened image).
        dataset: ``(image [C, H, W], label)`` pairs, or images alone.
        batch_size: images per forward pass.
        device: where the encoder runs.
        num_workers: data-loading processes.
        desc: show progress with this title: a bar on a terminal, a plain line every 30 s otherwise.
        features: any of :data:`FEATURES`: ``cls`` (class token after the final norm, MAE's linear probe),
            ``avg`` (mean of the patch tokens, CL-MAE's kNN), ``pooled`` (the model's own pooling,
            ``forward_head(pre_logits=True)``) and ``patch`` (all patch tokens, ``[N, L, D]``).

    Returns:
        ``({feature: float32 tensor on the CPU}, labels [N] or None)``.
    """
    bad = [f for f in features if f not in FEATURES]
    if bad or not features:
        raise ValueError(f"features must be among {FEATURES}, got {list(features)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dev = torch.device(device)
    if encoder is not None:
        encoder = encoder.to(dev).eval()
    batches = iter(DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers))
    out: dict[str, list[torch.Tensor]] = {f: [] for f in features}
    labels = []
    try:
        # A bar on a terminal, a plain line every 30 s in a log file
        for batch in progress(batches, desc):
            x, y = batch if isinstance(batch, (list, tuple)) else (batch, None)
            if y is not None:
                labels.append(y)
            for f, value in _batch_features(encoder, x, dev, features).items():
                out[f].append(value.cpu())
    finally:
        # Stop the workers now: after an error (an unreadable image) the traceback keeps the iterator alive, and
        # DataLoader's own clean-up at garbage collection then waits seconds for each worker.
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
    if not out[features[0]]:
        raise ValueError("the data set is empty: there are no images to extract features from")
    return {f: torch.cat(v) for f, v in out.items()}, torch.cat(labels).long() if labels else None


def _batch_features(
    encoder: nn.Module | None, x: torch.Tensor, dev: torch.device, features: tuple[str, ...]
) -> dict[str, torch.Tensor]:
    """The ``features`` of one batch of model-ready images ``x``, float32 on ``dev`` (raw pixels: where ``x`` is)."""
    if encoder is None:
        return {f: x.flatten(1).float() for f in features}
    tokens = encoder.forward_features(x.to(dev))  # [B, prefix + L, D], after the final norm
    patches = tokens[:, encoder.num_prefix_tokens :]
    out = {}
    for f in features:
        if f == "cls":
            # clone: a slice is a view that would keep the whole [B, L, D] batch alive
            value = tokens[:, 0].clone()
        elif f == "avg":
            value = patches.mean(1)
        elif f == "pooled":
            value = encoder.forward_head(tokens, pre_logits=True)
        else:
            value = patches
        out[f] = value.float()
    return out


@torch.no_grad()
def extract_tensor_features(
    encoder: nn.Module | None,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: dict[str, Any],
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    desc: str | None = None,
    features: tuple[str, ...] = POOLS,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """:func:`extract_features` of uint8 images ``[N, H, W]`` held as one tensor, with no PIL image and no
    ``DataLoader``: the images go to ``device`` once, each batch is a slice normalised there, the features stay there
    until one copy to the CPU at the end. Needs :func:`~clmae.data.transforms.identity.identity_at_model_size`;
    gives what :func:`extract_features` gives on the :func:`~clmae.data.transforms.pil.eval_transform_for` dataset of
    the same images (the same inputs, bit for bit).

    Returns:
        ``({feature: float32 tensor on the CPU}, labels [N])``.
    """
    if not identity_at_model_size(cfg, tuple(images.shape[1:])) or images.dtype != torch.uint8 or images.ndim != 3:
        raise ValueError(
            f"extract_tensor_features takes uint8 images [N, H, W] at the model's size with crop_pct 1, got "
            f"{images.dtype} {tuple(images.shape)} for {cfg}"
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if images.shape[0] == 0:
        raise ValueError("the data set is empty: there are no images to extract features from")
    dev = torch.device(device)
    if encoder is not None:
        encoder = encoder.to(dev).eval()
    images = images.to(dev)
    out: dict[str, list[torch.Tensor]] = {f: [] for f in features}
    starts = range(0, images.shape[0], batch_size)
    for start in progress(starts, desc):
        x = normalize_uint8(images[start : start + batch_size], cfg)
        for f, value in _batch_features(encoder, x, dev, features).items():
            out[f].append(value)
    return {f: torch.cat(v).cpu() for f, v in out.items()}, labels.long().cpu()
