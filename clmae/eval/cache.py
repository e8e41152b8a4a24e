"""The feature cache: features of both splits extracted once (:mod:`clmae.eval.features`) and kept per model + data
+ preprocessing as safetensors files, ``$CLMAE_CACHE/features/<key>.safetensors``."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from torch import nn

from .._atomic import write_file
from ..data.transforms.identity import identity_at_model_size
from ..data.transforms.numbers import pil_mode
from ..data.transforms.pil import eval_transform_for
from .data import EvalData
from .features import POOLS, data_config, extract_features, extract_tensor_features
from .model import ResolvedModel

FEATURE_VERSION = 1  # bump when what is extracted changes, so that old cache entries are not reused


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
