"""``clmae extract``: a folder of images -> one safetensors file of features (and the file names), through a pretrained
encoder and the evaluation's :func:`~clmae.eval.features.extract_features`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from torch.utils.data import Dataset

from .._atomic import check_target
from .._device import resolve_device
from .._files import is_safetensors
from .._safetensors import safetensors_metadata, write_safetensors
from ..data.imagefolder import ImageFolderImages
from ..data.images import read_image
from ..data.spec import check_outside, check_path
from ..data.transforms.numbers import pil_mode
from ..hub import load_pretrained
from .features import FEATURES, extract_features

# The metadata keys of a features file (what makes it one that clmae extract may replace).
_FEATURE_META = ("files", "model", "data_config")


def is_features_file(path: str | Path) -> bool:
    """Whether ``path`` is a features file written by ``clmae extract`` (safetensors with its metadata keys)."""
    if not is_safetensors(path):
        return False
    try:
        meta = safetensors_metadata(path)
    except ValueError:
        return False
    return all(key in meta for key in _FEATURE_META)


class _Images(Dataset):
    def __init__(self, files: list[Path], transform: Any, mode: str) -> None:
        self.files, self.transform, self.mode = files, transform, mode

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(read_image(self.files[i], self.mode))


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
    skip_unreadable: bool = False,
    overwrite: bool = False,
    **load_kwargs: Any,
) -> Path:
    """``clmae extract``: load ``model_name``, encode every image under ``images``, write ``out`` (safetensors).

    The file holds one tensor per feature; its metadata holds ``files`` (JSON list of paths relative to ``images``,
    row order), ``model`` and ``data_config``. With ``skip_unreadable`` (as in ``clmae train``) every image is decoded
    once first and those that cannot be are left out (and out of ``files``), their count printed; otherwise the
    first one stops the command. The file is written beside ``out`` and renamed into place (a failed write leaves an
    earlier ``out`` whole); an existing ``out`` that is not an earlier ``clmae extract`` file is refused unless
    ``overwrite``.

    Returns:
        The output path.
    """
    # Every argument is checked before the model is loaded and the images are read.
    dev = resolve_device(device)
    bad = [f for f in features if f not in FEATURES]
    if bad or not features:
        raise ValueError(f"features must be among {', '.join(FEATURES)} (comma-separated), got {','.join(features)}")
    if batch_size < 1 or num_workers < 0:
        raise ValueError(f"batch size must be >= 1 and workers >= 0, got {batch_size} and {num_workers}")
    out = check_path(out, "output")
    check_path(images, "images folder")
    if out.is_dir():
        raise ValueError(f"output {out} is a folder; give a file name, e.g. {out / 'features.safetensors'}")
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    if out.is_dir():
        raise ValueError(f"output {out} is a folder; give a file name, e.g. {out / 'features.safetensors'}")
    check_outside(out, Path(images), "output", "images folder")
    check_target(out, is_features_file, "a features file written by clmae extract", overwrite=overwrite, folder=False)
    source = ImageFolderImages(images)
    if skip_unreadable:
        dropped = source.drop_unreadable()
        print(f"{len(source)} images in {images} ({dropped} unreadable left out)")
    files = [Path(source.files[i]) for i in (range(source.raw_len()) if source.keep is None else source.keep)]
    model = load_pretrained(model_name, **load_kwargs)
    cfg = timm.data.resolve_data_config({}, model=model)
    dataset = _Images(files, timm.data.create_transform(**cfg), pil_mode(cfg["input_size"][0]))
    desc = "extract" if progress else None
    feats, _ = extract_features(model, dataset, batch_size, dev, num_workers, desc, features)
    meta = {
        "files": json.dumps([str(f.relative_to(images)) for f in files]),
        "model": str(model_name),
        "data_config": json.dumps({k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()}),
    }
    write_safetensors({k: v.contiguous() for k, v in feats.items()}, out, meta, what="features file")
    return out
