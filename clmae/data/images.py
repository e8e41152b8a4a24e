"""Decoding of users' image files, and the base of the readers that serve them (folders, tar shards, HF datasets).

Every reader is map-style: image ``i`` is found from its index alone, so the trainer's
:class:`~clmae.data.sampler.GlobalBatchSampler` can give each process and worker its own samples and resume at any
step. Images are decoded with PIL and converted to the model's channels: ``"RGB"`` for 3, ``"L"`` for 1
(greyscale, RGBA, palette, CMYK and 16-bit files alike).
"""

from __future__ import annotations

import io
import os
import struct
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
# what PIL raises on bad files: UnidentifiedImageError and truncated files are OSErrors, some plugins raise the others
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, Image.DecompressionBombError)
SKIP_HINT = "remove or replace the file, or set skip_unreadable=true to leave unreadable files out"


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """``img`` converted to ``mode``, 16-bit greyscale scaled to 8 bits (PIL's own conversion would clip it)."""
    if img.mode == mode:
        return img
    if img.mode.startswith("I;16") or (img.mode == "I" and img.getextrema()[1] > 255):  # older PIL: 16-bit as I
        img = Image.fromarray(np.clip(np.asarray(img).astype(np.int64) >> 8, 0, 255).astype(np.uint8), "L")
    return img.convert(mode)


def _open(data: bytes | str | os.PathLike) -> Image.Image:
    return Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)


def decode_image(data: bytes | str | os.PathLike | Image.Image, mode: str) -> Image.Image:
    """Decode an encoded image (its bytes or its path; a PIL image is only converted) to a PIL image of ``mode``.

    Raises:
        OSError: the data is not a readable image (PIL's ``UnidentifiedImageError``, truncated files), or another of
            the errors PIL raises on bad files.
    """
    if isinstance(data, Image.Image):
        return to_mode(data, mode)
    with _open(data) as img:
        img.load()
        return to_mode(img, mode)


def read_image(path: str | os.PathLike, mode: str) -> Image.Image:
    """The image file ``path`` decoded to PIL ``mode``; a ``ValueError`` naming the file if it cannot be decoded
    (truncated, corrupt or no image)."""
    try:
        return decode_image(path, mode)
    except _DECODE_ERRORS as e:
        raise ValueError(f"cannot read image {path} ({e}); remove or repair it") from None


def check_image(data: bytes | str | os.PathLike | Image.Image) -> None:
    """Decode an encoded image completely, and nothing more: JPEGs at 1/8 scale, which still reads every byte.

    Raises:
        OSError: as :func:`decode_image`.
    """
    if not isinstance(data, Image.Image):
        with _open(data) as img:
            img.draft(img.mode, (1, 1))
            img.load()


class ImageSource(Dataset):
    """A map-style set of encoded images, served as PIL images of ``mode``; the base of clmae's readers.

    Subclasses give :meth:`raw_len`, :meth:`read` (the encoded image ``i``: bytes, a path or a PIL image) and
    :meth:`name` (how ``i`` is named in errors). :meth:`drop_unreadable` leaves out the images that do not decode.

    Args:
        mode: PIL mode of the images served.
    """

    def __init__(self, mode: str = "RGB") -> None:
        self.mode = mode
        self.keep: np.ndarray | None = None  # raw indices of the images served, after drop_unreadable

    def raw_len(self) -> int:
        """Number of images found, readable or not."""
        raise NotImplementedError

    def read(self, i: int) -> bytes | str | os.PathLike | Image.Image:
        """The encoded image at raw index ``i``."""
        raise NotImplementedError

    def name(self, i: int) -> str:
        """Image ``i`` (raw index) as named in errors: a file, or a member of a file."""
        raise NotImplementedError

    def __len__(self) -> int:
        return self.raw_len() if self.keep is None else len(self.keep)

    def __getitem__(self, index: int) -> Image.Image:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        i = index if self.keep is None else int(self.keep[index])
        try:
            return decode_image(self.read(i), self.mode)
        except _DECODE_ERRORS as e:
            raise ValueError(f"cannot read image {self.name(i)}: {e}; {SKIP_HINT}") from None

    def readable(self, i: int) -> bool:
        """Whether image ``i`` (raw index) decodes completely."""
        try:
            check_image(self.read(i))
        except _DECODE_ERRORS:
            return False
        return True

    def drop_unreadable(self, threads: int | None = None) -> int:
        """Decode every image once (in threads) and serve only those that decode; returns how many were left out.

        The result depends only on the files, never on worker processes or ranks, so every process of a run
        serves the same images in the same order.
        """
        n, chunk = self.raw_len(), 256
        threads = threads or min(16, os.cpu_count() or 1)
        with ThreadPoolExecutor(threads) as pool:
            parts = pool.map(lambda s: [self.readable(i) for i in range(s, min(s + chunk, n))], range(0, n, chunk))
            ok = np.fromiter((v for part in parts for v in part), dtype=bool, count=n)
        self.keep = np.flatnonzero(ok)
        return n - len(self.keep)
