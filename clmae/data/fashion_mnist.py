"""Fashion-MNIST read straight from its IDX files (``.gz``, ``.xz`` or raw), e.g. Debian's ``dataset-fashion-mnist``.

Fashion-MNIST: Xiao, Rasul and Vollgraf, Zalando Research, 2017; MIT licence. A small subset ships with clmae
(``clmae/data/assets``) so that the demo and tests run without any download.
"""

from __future__ import annotations

import gzip
import lzma
import os
from pathlib import Path

import torch

from .transforms.numbers import normalize as normalize_images

DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")
SAMPLE_ROOT = Path(__file__).parent / "assets"
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
MEAN, STD = 0.2860, 0.3530  # training-split pixel statistics, pixels in [0, 1]
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_INSTALL_HINT = (
    "install Debian's package with `apt-get install dataset-fashion-mnist`, or give a folder of the IDX files "
    "(root=FOLDER in Python, --data fmnist:FOLDER on the command line)"
)


def read_idx(path: str | os.PathLike) -> torch.Tensor:
    """Read an unsigned-byte IDX file (the MNIST format), gzip- or xz-compressed or not.

    Args:
        path: the file.

    Returns:
        uint8 tensor with the file's dimensions (``[N, 28, 28]`` images, ``[N]`` labels).
    """
    path = Path(path)
    opener = {".gz": gzip.open, ".xz": lzma.open}.get(path.suffix, open)
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, lzma.LZMAError) as e:  # gzip and lzma raise these on corrupt or truncated files
        raise ValueError(f"cannot read IDX file {path}: {e}; the file is corrupt or truncated, reinstall it") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise ValueError(f"{path}: only unsigned-byte IDX files are supported, got type code {data[2]:#x}")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path} is truncated (header incomplete)")
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    count = 1
    for s in shape:
        count *= s
    if len(data) - header != count:
        raise ValueError(
            f"{path} is truncated or corrupt: header promises {count} bytes of data for shape {shape}, "
            f"found {len(data) - header}; reinstall the file"
        )
    return torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8).reshape(shape)


def _find(root: Path, stem: str) -> Path:
    for candidate in (root / f"{stem}.gz", root / f"{stem}.xz", root / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"Fashion-MNIST file {stem}(.gz, .xz) not found in {root}; {_INSTALL_HINT}")


def fmnist_root(spec: str) -> Path | None:
    """The IDX folder a Fashion-MNIST data spec names, or ``None`` if ``spec`` is not one.

    ``fmnist`` (or ``fashion-mnist``): Debian's folder; ``fmnist:FOLDER``: that folder; ``fmnist-sample``: the subset
    bundled with clmae.
    """
    if spec == "fmnist-sample":
        return SAMPLE_ROOT
    name, sep, folder = spec.partition(":")
    if name in ("fmnist", "fashion-mnist"):
        return Path(folder) if sep else DEBIAN_ROOT
    return None


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images and labels.

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        root: folder with the four IDX files; default Debian's ``/usr/share/datasets/fashion-mnist``. Pass
            :data:`SAMPLE_ROOT` for the subset bundled with clmae.

    Returns:
        ``images`` uint8 ``[N, 28, 28]`` and ``labels`` int64 ``[N]``.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = DEBIAN_ROOT if root is None else Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Fashion-MNIST folder {root} does not exist; {_INSTALL_HINT}")
    images = read_idx(_find(root, _FILES[split][0]))
    labels = read_idx(_find(root, _FILES[split][1])).long()
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Fashion-MNIST files in {root} do not match: images {tuple(images.shape)}, labels {tuple(labels.shape)}"
        )
    return images, labels


def to_float(images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """uint8 ``[N, 28, 28]`` -> float ``[N, 1, 28, 28]`` in [0, 1], normalised with the training mean/std."""
    x = images.unsqueeze(1)
    return normalize_images(x, (MEAN,), (STD,)) if normalize else x.float() / 255.0
