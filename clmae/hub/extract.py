"""Feature extraction for a folder of images: a pretrained encoder -> one safetensors file with the file names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from PIL import Image, UnidentifiedImageError
from safetensors.torch import save_file
from torch.utils.data import DataLoader, Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS
from tqdm.auto import tqdm

FEATURES = ("pooled", "cls", "avg", "patch")


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


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    files: list[Path],
    *,
    features: tuple[str, ...] = ("pooled",),
    batch_size: int = 64,
    device: str | torch.device | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[str, torch.Tensor]:
    """Encode images with the model's own preprocessing (``timm.data.resolve_data_config``).

    Args:
        model: a timm ``VisionTransformer`` (e.g. from :func:`clmae.load_pretrained`).
        files: image paths.
        features: any of ``pooled`` (``forward_head(pre_logits=True)``: the model's own pooling, ``[N, D]``),
            ``cls`` (class token after the final norm, ``[N, D]``), ``avg`` (mean of the patch tokens, the reference
            kNN feature, ``[N, D]``) and ``patch`` (all patch tokens, ``[N, L, D]``).
        batch_size: images per forward pass.
        device: default CUDA if available, else CPU.
        num_workers: image decoding processes.
        progress: show a tqdm bar.

    Returns:
        ``{feature: float32 tensor on the CPU}`` in the order of ``files``.
    """
    bad = [f for f in features if f not in FEATURES]
    if bad or not features:
        raise ValueError(f"features must be among {FEATURES}, got {list(features)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = timm.data.resolve_data_config({}, model=model)
    transform = timm.data.create_transform(**cfg)
    mode = "L" if cfg["input_size"][0] == 1 else "RGB"
    loader = DataLoader(_Images(files, transform, mode), batch_size=batch_size, num_workers=num_workers)
    model = model.to(device).eval()
    prefix = model.num_prefix_tokens
    out: dict[str, list[torch.Tensor]] = {f: [] for f in features}
    for x in tqdm(loader, desc="extract", unit="batch", disable=not progress):
        tokens = model.forward_features(x.to(device))  # [N, prefix + L, D], after the final norm
        got = {
            "pooled": lambda t=tokens: model.forward_head(t, pre_logits=True),
            "cls": lambda t=tokens: t[:, 0],
            "avg": lambda t=tokens: t[:, prefix:].mean(1),
            "patch": lambda t=tokens: t[:, prefix:],
        }
        for f in features:
            out[f].append(got[f]().float().cpu())
    return {f: torch.cat(v) for f, v in out.items()}


def extract_folder(
    model_name: str,
    images: str | Path,
    out: str | Path,
    *,
    features: tuple[str, ...] = ("pooled",),
    batch_size: int = 64,
    device: str | None = None,
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
    from .load import load_pretrained

    files = list_images(images)
    model = load_pretrained(model_name, **load_kwargs)
    feats = extract_features(
        model,
        files,
        features=features,
        batch_size=batch_size,
        device=device,
        num_workers=num_workers,
        progress=progress,
    )
    out = Path(out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg = timm.data.resolve_data_config({}, model=model)
    meta = {
        "files": json.dumps([str(f.relative_to(images)) for f in files]),
        "model": str(model_name),
        "data_config": json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}),
    }
    save_file({k: v.contiguous() for k, v in feats.items()}, out, metadata=meta)
    return out
