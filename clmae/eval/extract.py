"""``clmae extract``: a folder of images -> one safetensors file of features (and the file names), through a pretrained
encoder and the evaluation's :func:`~clmae.eval.features.extract_features`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from PIL import Image, UnidentifiedImageError
from safetensors.torch import save_file
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from .._device import resolve_device
from ..hub import load_pretrained
from .features import extract_features, pil_mode


def list_images(root: str | Path) -> list[Path]:
    """Image files under ``root`` (recursively), sorted by relative path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS)
    if not files:
        raise ValueError(f"no images ({', '.join(IMG_EXTENSIONS)}) under {root}")
    return files


class _Images(Dataset):
    def __init__(self, files: list[Path], transform: Any, mode: str) -> None:
        self.files, self.transform, self.mode = files, transform, mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        try:
            with Image.open(self.files[i]) as img:
                return self.transform(img.convert(self.mode))
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read image {self.files[i]} ({e}); remove or repair it") from e


def extract_folder(
    model_name: str,
    images: str | Path,
    out: str | Path,
    *,
    features: tuple[str, ...] = ("pooled",),
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int = 0,
    progress: bool = True,
    **load_kwargs: Any,
) -> Path:
    """``clmae extract``: load ``model_name``, encode every image under ``images``, write ``out`` (safetensors).

    The file holds one tensor per feature; its metadata holds ``files`` (JSON list of paths relative to ``images``,
    row order), ``model`` and ``data_config``.

    Returns:
        The output path.
    """
    files = list_images(images)
    model = load_pretrained(model_name, **load_kwargs)
    cfg = timm.data.resolve_data_config({}, model=model)
    dataset = _Images(files, timm.data.create_transform(**cfg), pil_mode(cfg))
    desc = "extract" if progress else None
    feats, _ = extract_features(model, dataset, batch_size, resolve_device(device), num_workers, desc, features)
    out = Path(out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "files": json.dumps([str(f.relative_to(images)) for f in files]),
        "model": str(model_name),
        "data_config": json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}),
    }
    save_file({k: v.contiguous() for k, v in feats.items()}, out, metadata=meta)
    return out
