"""A training set's fingerprint: what a checkpoint records of its data, so that a resume on other data is noticed.

Cheap at any size (an ImageNet folder costs a hash of its file list and the reading of :data:`SAMPLE` files): the
number of images, for a folder the hash of every image's path relative to the folder (the list is in memory
already), and the hash of the bytes of up to :data:`SAMPLE` images spread evenly over the set (Fashion-MNIST and
synthetic sets: their pixels; WebDataset and Hugging Face sets: their encoded images). Replacing or reordering the
images, or switching to another source of as many images, changes it; editing a single image between the sampled
ones does not.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .imagefolder import ImageFolderImages
from .images import ImageSource
from .transforms.device import DeviceImages

SAMPLE = 32  # images whose bytes are hashed


def _sample(n: int) -> list[int]:
    """Up to :data:`SAMPLE` indices spread evenly over ``range(n)``, the first and the last included."""
    return sorted({int(i) for i in np.linspace(0, n - 1, min(n, SAMPLE)).round()}) if n else []


def _content(item: bytes | str | os.PathLike | Image.Image) -> bytes:
    """The bytes of one encoded image as a source reads it: a file's bytes, or a decoded image's pixels."""
    if isinstance(item, Image.Image):
        return f"{item.mode} {item.size}".encode() + item.tobytes()
    if isinstance(item, bytes):
        return item
    return Path(item).read_bytes()


def data_fingerprint(dataset: Any) -> dict[str, Any]:
    """The fingerprint of a pretraining data set (``PretrainingData.dataset``), a plain dict a checkpoint holds.

    Args:
        dataset: a :class:`~clmae.data.DeviceImages` or a data set whose ``source`` is an
            :class:`~clmae.data.images.ImageSource` (:class:`~clmae.data.sampler.SeededDataset`).

    Returns:
        ``{"images": N, "names": SHA-256 of the relative paths or None, "content": SHA-256 of the sampled images}``.
    """
    content, names = hashlib.sha256(), None
    if isinstance(dataset, DeviceImages):
        n = len(dataset.images)
        for i in _sample(n):
            content.update(dataset.images[i].detach().cpu().contiguous().numpy().tobytes())
        return {"images": n, "names": None, "content": content.hexdigest()}
    source: ImageSource = dataset.source
    n = len(source)
    served = np.arange(n) if source.keep is None else source.keep  # raw indices of the images served
    if isinstance(source, ImageFolderImages):
        prefix = os.path.join(str(source.root), "")  # files are ROOT/RELATIVE ("RELATIVE" for the folder ".")
        files = source.files if source.keep is None else [source.files[i] for i in source.keep.tolist()]
        relative = [f[len(prefix) :] if f.startswith(prefix) else f for f in files]
        names = hashlib.sha256("\0".join(relative).encode("utf-8", "surrogateescape")).hexdigest()
    for index in _sample(n):
        data = _content(source.read(int(served[index])))
        content.update(len(data).to_bytes(8, "little") + data)
    return {"images": n, "names": names, "content": content.hexdigest()}


def fingerprint_change(saved: dict[str, Any], now: dict[str, Any]) -> str | None:
    """What differs between two fingerprints, in words (``None``: the same data)."""
    if saved == now:
        return None
    if saved.get("images") != now.get("images"):
        return f"{saved.get('images')} images then, {now.get('images')} now"
    if (saved.get("names") is None) != (now.get("names") is None):
        return "another kind of source (a folder of files against a held or generated set)"
    if saved.get("names") != now.get("names"):
        return "other file names"
    return "other image contents"
