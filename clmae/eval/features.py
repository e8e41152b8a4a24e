"""Frozen features, extracted once in batches and cached per model + data + preprocessing.

For a timm ``VisionTransformer`` one forward pass gives both features the protocols need, read after the encoder's
final LayerNorm (``forward_features``): ``cls``, the class token (MAE's linear probe), and ``avg``, the mean of the
patch tokens (CL-MAE's kNN). For raw pixels both are the flattened, normalised image.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from PIL import Image, ImageOps
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T

from .._atomic import write_file
from .._progress import progress
from ..data.preprocess import EVAL_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, eval_is_identity, normalize, pil_mode
from ..data.transforms import eval_transform
from .data import EvalData
from .model import ResolvedModel

FEATURE_VERSION = 1  # bump when what is extracted changes, so that old cache entries are not reused
POOLS = ("cls", "avg")
FEATURES = ("cls", "avg", "pooled", "patch")


@dataclass
class FeatureSet:
    """Features and labels of both splits: ``train[pool]`` is ``[N, D]``, ``val[pool]`` is ``[M, D]``."""

    train: dict[str, torch.Tensor]
    train_labels: torch.Tensor
    val: dict[str, torch.Tensor]
    val_labels: torch.Tensor
    cache_file: str | None = None


def default_cache_dir() -> Path:
    """``$CLMAE_CACHE/features``, else ``~/.cache/clmae/features``."""
    root = os.environ.get("CLMAE_CACHE") or Path.home() / ".cache" / "clmae"
    return Path(root) / "features"


def data_config(model: ResolvedModel, encoder: nn.Module | None, data: EvalData) -> dict[str, Any]:
    """Preprocessing: the encoder's ``pretrained_cfg`` (timm's ``resolve_data_config``), the data's for raw pixels."""
    if encoder is None:
        return dict(data.default_cfg)
    cfg = timm.data.resolve_data_config(model=encoder)
    return {k: cfg[k] for k in ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode") if k in cfg}


def eval_transform_for(cfg: dict[str, Any]) -> T.Compose:
    """:func:`clmae.data.eval_transform` (resize to ``size / crop_pct`` -> center-crop ``size`` -> tensor ->
    normalise) with the fields of a timm data config: ``input_size``, ``mean``, ``std``, ``crop_pct`` and the resize
    filter ``interpolation``.
    """
    size, crop_mode = tuple(cfg["input_size"][-2:]), cfg.get("crop_mode") or "center"
    if size[0] != size[1] or crop_mode != "center":
        raise ValueError(
            f"evaluation center-crops square images; this model's pretrained_cfg asks for input_size "
            f"{cfg['input_size']} with crop_mode {crop_mode!r}: set a square input_size and crop_mode 'center' in "
            "its config.json"
        )
    keys = ("mean", "std", "crop_pct", "interpolation")
    return eval_transform(size[0], **{k: cfg[k] for k in keys if cfg.get(k)})


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


def identity_at_model_size(cfg: dict[str, Any], image_hw: tuple[int, ...]) -> bool:
    """True when :func:`eval_transform_for` ``(cfg)`` leaves images of ``image_hw`` (H, W) at their size: square images
    of the model's ``input_size`` whose resize (to ``int(size / crop_pct)``) and centre crop change nothing, so the
    transform is only ``pixel / 255`` and the normalisation (1- or 3-channel models)."""
    size, crop_mode = tuple(cfg["input_size"][-2:]), cfg.get("crop_mode") or "center"
    if cfg["input_size"][0] not in (1, 3) or crop_mode != "center" or size[0] != size[1]:
        return False
    return eval_is_identity(image_hw, size[0], cfg.get("crop_pct") or EVAL_CROP_PCT)


def normalize_uint8(images: torch.Tensor, cfg: dict[str, Any]) -> torch.Tensor:
    """uint8 greyscale images ``[B, H, W]`` -> model input ``[B, C, H, W]`` float32, on their device: what
    ``ToTensor`` + ``Normalize`` of :func:`eval_transform_for` give (bit for bit) for images it does not resize;
    3-channel models get the grey channel three times, as PIL's ``convert("RGB")``."""
    x = images.unsqueeze(1)
    if cfg["input_size"][0] == 3:
        x = x.expand(-1, 3, -1, -1)
    return normalize(x, cfg.get("mean") or IMAGENET_MEAN, cfg.get("std") or IMAGENET_STD)


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
    until one copy to the CPU at the end. Needs :func:`identity_at_model_size`; gives what :func:`extract_features`
    gives on the :func:`eval_transform_for` dataset of the same images (the same inputs, bit for bit).

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


def cache_key(model: ResolvedModel, data: EvalData, cfg: dict[str, Any], limits: dict[str, Any]) -> str:
    """Hash of everything the features depend on: weights (sha256 or arch + init seed), data, preprocessing."""
    model_id = {k: v for k, v in model.info.items() if k != "file"}
    blob = {
        "v": FEATURE_VERSION,
        "model": model_id,
        "data": [data.kind, data.fingerprint],
        "cfg": cfg,
        "limits": limits,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:24]


def features_for(
    model: ResolvedModel,
    data: EvalData,
    *,
    batch_size: int = 256,
    device: str = "cpu",
    num_workers: int = 0,
    train_limit: int | None = None,
    val_limit: int | None = None,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    encoder: nn.Module | None = None,
) -> FeatureSet:
    """Features of both splits of ``data`` under ``model``, read from / written to the cache when ``use_cache``.

    Raw pixels are never cached (reading them is as fast as reading a cache). The key leaves out the device and the
    batch size: features from a GPU are reused on the CPU (they differ only by floating-point rounding).

    Fashion-MNIST at the model's size (28 px, ``crop_pct`` 1: the evaluation transform changes no pixel) is read as
    one uint8 tensor and encoded on the device by :func:`extract_tensor_features`, with no PIL image and no
    ``DataLoader`` (``num_workers`` is not used); other data and sizes go through the PIL transform.

    Args:
        model: the resolved ``--model``.
        data: the resolved ``--data``.
        batch_size: images per forward pass.
        device: ``"cpu"``, ``"cuda"``, ...
        num_workers: data-loading processes.
        train_limit: use a fixed random subset of this many training images.
        val_limit: use a fixed random subset of this many validation images.
        cache_dir: cache folder (default :func:`default_cache_dir`).
        use_cache: read and write the cache.
        encoder: ``model.encoder()`` if already built (it is built otherwise).

    Returns:
        A :class:`FeatureSet`.
    """
    if encoder is None and not model.is_raw:
        encoder = model.encoder()
    cfg = data_config(model, encoder, data)
    limits = {"train": train_limit, "val": val_limit}
    path = None
    if use_cache and not model.is_raw:
        path = Path(cache_dir or default_cache_dir()) / f"{cache_key(model, data, cfg, limits)}.safetensors"
        if path.is_file():
            cached = _read_cache(path)
            if cached is not None:
                return cached
    splits = data.tensors("train", train_limit), data.tensors("val", val_limit)
    if all(t is not None and identity_at_model_size(cfg, tuple(t[0].shape[1:])) for t in splits):
        # Fashion-MNIST at the model's size: the uint8 tensor on the device, no PIL, no DataLoader (same features)
        (train_img, train_lab), (val_img, val_lab) = splits
        train, train_y = extract_tensor_features(
            encoder, train_img, train_lab, cfg, batch_size, device, "features (train)"
        )
        val, val_y = extract_tensor_features(encoder, val_img, val_lab, cfg, batch_size, device, "features (val)")
    else:
        transform, mode = eval_transform_for(cfg), pil_mode(cfg["input_size"][0])
        train_ds = data.dataset("train", transform, mode, train_limit)
        val_ds = data.dataset("val", transform, mode, val_limit)
        train, train_y = extract_features(encoder, train_ds, batch_size, device, num_workers, "features (train)")
        val, val_y = extract_features(encoder, val_ds, batch_size, device, num_workers, "features (val)")
    if path is not None:
        tensors = {f"{s}_{p}": feats[p].contiguous() for s, feats in (("train", train), ("val", val)) for p in POOLS}
        _write_cache(path, {**tensors, "train_labels": train_y, "val_labels": val_y})
    return FeatureSet(train, train_y, val, val_y, None if path is None else str(path))


def _read_cache(path: Path) -> FeatureSet | None:
    """A cache entry, or ``None`` (after deleting it and saying so on stderr) if it is unreadable or incomplete."""
    try:
        t = load_file(path)
    except (SafetensorError, OSError) as e:  # truncated, corrupt or removed meanwhile
        problem = f"cannot be read ({e})"
    else:
        need = [f"{s}_{p}" for s in ("train", "val") for p in POOLS] + ["train_labels", "val_labels"]
        missing = [k for k in need if k not in t]
        rows = {} if missing else {s: {t[k].shape[:1] for k in need if k.startswith(s)} for s in ("train", "val")}
        if missing:
            problem = f"lacks {', '.join(missing)}"
        elif any(len(r) != 1 for r in rows.values()):
            problem = f"has features and labels of different lengths ({rows})"
        else:
            return FeatureSet(
                {p: t[f"train_{p}"] for p in POOLS},
                t["train_labels"],
                {p: t[f"val_{p}"] for p in POOLS},
                t["val_labels"],
                str(path),
            )
    print(f"clmae eval: feature cache entry {path} {problem}; deleting it and extracting again", file=sys.stderr)
    path.unlink(missing_ok=True)
    return None


def _write_cache(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write a cache entry atomically (:func:`clmae._atomic.write_file`: concurrent runs each write their own
    temporary file and the last rename wins; a killed run leaves no half-written entry)."""
    write_file(path, safetensors_bytes(tensors), what="feature cache entry")


def train_transform(
    cfg: dict[str, Any],
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    auto_augment: str | None = None,
    re_prob: float = 0.0,
):
    """timm's training transform: RandomResizedCrop(``scale``) + flip (+ RandAugment, random erasing), normalised.

    No colour jitter (MAE's linear probe and fine-tuning use none).
    """
    tf = timm.data.create_transform(
        cfg["input_size"],
        is_training=True,
        scale=scale,
        hflip=hflip,
        color_jitter=None,
        auto_augment=auto_augment,
        interpolation=cfg.get("interpolation", "bicubic"),
        mean=cfg["mean"],
        std=cfg["std"],
        re_prob=re_prob,
        re_mode="pixel",
        re_count=1,
    )
    _fix_posterize(tf)
    return tf


def _posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's ``posterize``, with 0 bits giving a black image as Pillow did before it started to reject 0."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def _fix_posterize(transform: Any) -> None:
    """Let MAE's RandAugment (``rand-m9-mstd0.5-inc1``) run on current Pillow.

    At magnitude 10 timm's increasing posterize keeps 0 bits; Pillow 13 raises a ``ValueError`` for that instead of
    returning a black image. The posterize ops of the built transform get :func:`_posterize`, which keeps the old
    behaviour; nothing else changes.
    """
    from timm.data import auto_augment

    for t in getattr(transform, "transforms", []):
        for op in getattr(t, "ops", []):
            if getattr(op, "aug_fn", None) is auto_augment.posterize:
                op.aug_fn = _posterize
