"""Image files decoded and augmented in batches on the training device (``decode=device``), the PIL path's fallback.

The PIL path decodes and augments every image in ``DataLoader`` workers, one Python call per image. Here the workers
only read the encoded bytes (:class:`EncodedImages`), and the training process decodes a whole micro-batch at once
(:class:`BatchDecoder`): JPEGs with ``torchvision.io.decode_jpeg`` on the GPU (nvJPEG, batched), then MAE's
RandomResizedCrop + flip (or the evaluation transform) as per-sample resampling matrices on the device
(:mod:`clmae.data.transforms.augment`). The images served are those of the PIL path:

* the same crop boxes and flips, drawn from the same per-sample seeds (:func:`~.augment.crop_params`, as
  :class:`~.device.DeviceImages` does); the bicubic resampling equals PIL's up to a grey level or two;
* the same pixels: what torchvision cannot decode exactly as :func:`~clmae.data.images.decode_image` does (PNGs
  that are not 8-bit grey/RGB(A), CMYK and 12-bit JPEGs, GIF, WebP, TIFF, BMP, a JPEG whose data does not end with
  its end marker, ...) is decoded with PIL, in the workers when they are told to (``predecode``, the default) or else
  in the training process; colour conversion follows PIL's (``"L"`` is PIL's integer luma of the RGB pixels);
* the same errors: an image that does not decode is a ``ValueError`` naming the file.

On a CPU the same code runs with ``torchvision.io.decode_image`` (libjpeg, libpng); it is the tested reference of the
GPU path, not a faster CPU path.

Typical use in a training loop::

    encoded = EncodedImages(source)                     # source: an ImageSource whose mode is the model's
    loader = DataLoader(encoded, batch_size=B, sampler=GlobalBatchSampler(...), collate_fn=collate_encoded,
                        num_workers=W, persistent_workers=W > 0, drop_last=True)
    decoder = BatchDecoder(224, mean, std, in_chans=3, augment=True, device="cuda", names=encoded.name)
    for batch in loader:
        x = decoder(*batch)                             # [B, 3, 224, 224] float32 on the GPU, normalised
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..images import _DECODE_ERRORS, SKIP_HINT, ImageSource, decode_image
from .augment import crop_params, resample, resize_matrix, resized_crop
from .numbers import EVAL_CROP_PCT, eval_geometry, normalize, pil_mode

# Images per group are limited so that a group's padded float32 copy stays under 1 GiB: one large image in a batch
# of small ones would otherwise pad all of them to its size.
MAX_GROUP_ELEMENTS = 1 << 28
_SOF_DEVICE = (0xC0, 0xC1, 0xC2)  # baseline, extended and progressive Huffman JPEG: what nvJPEG and libjpeg decode
_SOF_OTHER = frozenset((0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF))  # lossless, arithmetic, ...
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_DIRECT = (0, 2, 4, 6)  # grey, RGB, grey + alpha, RGBA (not palette)


def _tv_io():
    """``torchvision.io``, imported when first needed (it loads image libraries the PIL path does not use)."""
    import torchvision.io

    return torchvision.io


def _quiet(fn: Callable, *args, **kwargs):
    # torchvision 0.29 deprecates its decoders in favour of torchcodec with a warning per call; they still work, and
    # clmae falls back to PIL where they are missing.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=".*TorchVision.*")
        warnings.filterwarnings("ignore", category=UserWarning, message=".*not writable.*")
        return fn(*args, **kwargs)


def jpeg_info(data: torch.Tensor | bytes | np.ndarray) -> tuple[int, int, int, int] | None:
    """``(marker, precision, components, complete)`` of a JPEG's frame header, or ``None`` if ``data`` is no JPEG.

    Only the marker segments before the frame header are walked (a few reads); ``complete`` is 1 when the data ends
    with the end-of-image marker (a truncated file does not). ``marker`` is the frame's SOF marker (``0xC0``
    baseline, ``0xC2`` progressive, ...), 0 if none was found.
    """
    b = memoryview(data.numpy() if isinstance(data, torch.Tensor) else data).cast("B")
    n = len(b)
    if n < 4 or b[0] != 0xFF or b[1] != 0xD8:
        return None
    complete = int(b[n - 2] == 0xFF and b[n - 1] == 0xD9)
    pos = 2
    while pos + 4 <= n:
        if b[pos] != 0xFF:
            break  # not at a marker: a damaged header, left to PIL
        marker = b[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            pos += 2
            continue
        if marker in _SOF_DEVICE or marker in _SOF_OTHER:
            if pos + 10 > n:
                break
            return marker, b[pos + 4], b[pos + 9], complete
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header before the data
            break
        pos += 2 + ((b[pos + 2] << 8) | b[pos + 3])
    return 0, 0, 0, complete


def image_kind(data: torch.Tensor) -> str:
    """How :class:`BatchDecoder` decodes the encoded image ``data`` (1-D uint8): ``"jpeg"`` (torchvision, batched on
    the GPU), ``"png"`` (torchvision on the host: 8-bit grey, grey + alpha, RGB, RGBA) or ``"pil"`` (everything
    else: clmae's PIL decoder)."""
    info = jpeg_info(data)
    if info is not None:
        marker, precision, components, complete = info
        return "jpeg" if marker in _SOF_DEVICE and precision == 8 and components in (1, 3) and complete else "pil"
    head = data[:26].numpy().tobytes()
    if len(head) == 26 and head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        return "png" if head[24] == 8 and head[25] in _PNG_DIRECT else "pil"
    return "pil"


def _pil_tensor(img: Image.Image) -> torch.Tensor:
    """A PIL image of mode ``"L"`` or ``"RGB"`` as ``[C, H, W]`` uint8."""
    array = np.asarray(img)
    return torch.from_numpy(array.copy()).reshape(img.height, img.width, -1).permute(2, 0, 1).contiguous()


def _read_bytes(data: bytes | bytearray | str | os.PathLike) -> torch.Tensor:
    if isinstance(data, (bytes, bytearray)):
        return torch.from_numpy(np.frombuffer(data, dtype=np.uint8).copy())
    return torch.from_numpy(np.fromfile(Path(data), dtype=np.uint8))


class EncodedImages(Dataset):
    """The images of an :class:`~clmae.data.images.ImageSource` as their encoded bytes, for :class:`BatchDecoder`.

    Indexed like :class:`~clmae.data.sampler.SeededDataset` (an index, or the sampler's ``(index, seed)`` pairs) and
    serving the same images (``source.keep`` after ``drop_unreadable`` included); an item is ``(data, seed, index)``:
    ``data`` is the encoded image as a 1-D uint8 tensor, or an image already decoded to ``source.mode`` as ``[C, H,
    W]`` uint8 (sources that hold PIL images, and, with ``predecode``, files the device would not decode).

    Args:
        source: the images; its ``mode`` (``"RGB"`` or ``"L"``) must be the decoder's.
        predecode: decode here (in the ``DataLoader`` worker, with PIL) the images that the batch decoder would
            decode on the host anyway (see :func:`image_kind`: all but 8-bit baseline/progressive JPEGs with 1 or 3
            components), so that the training process only decodes JPEGs. Without it, all files are passed encoded.
    """

    def __init__(self, source: ImageSource, predecode: bool = True) -> None:
        self.source, self.predecode = source, predecode

    def __len__(self) -> int:
        return len(self.source)

    def raw_index(self, index: int) -> int:
        """The source's raw index of image ``index`` (they differ after ``drop_unreadable``)."""
        return index if self.source.keep is None else int(self.source.keep[index])

    def name(self, index: int) -> str:
        """Image ``index`` as errors name it (the file, or a member of a file)."""
        return self.source.name(self.raw_index(index))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, int, int]:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        i = self.raw_index(index)
        try:
            data = self.source.read(i)
            if isinstance(data, Image.Image):
                return _pil_tensor(decode_image(data, self.source.mode)), seed, index
            encoded = _read_bytes(data)
            if self.predecode and encoded.ndim == 1 and image_kind(encoded) != "jpeg":
                raw = encoded.numpy().tobytes()
                return _pil_tensor(decode_image(raw, self.source.mode)), seed, index
        except _DECODE_ERRORS as e:
            raise ValueError(f"cannot read image {self.source.name(i)}: {e}; {SKIP_HINT}") from None
        return encoded, seed, index


def collate_encoded(items: Sequence[tuple[torch.Tensor, int, int]]) -> tuple[list[torch.Tensor], torch.Tensor, ...]:
    """``collate_fn`` of a ``DataLoader`` over :class:`EncodedImages`: ``(images, seeds, indices)``, the images a
    list (their sizes differ), seeds and indices ``[B]`` int64 -- the arguments of :class:`BatchDecoder`."""
    data = [item[0] for item in items]
    seeds = torch.tensor([item[1] for item in items], dtype=torch.int64)
    indices = torch.tensor([item[2] for item in items], dtype=torch.int64)
    return data, seeds, indices


def _luma(x: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` uint8 RGB -> ``[N, 1, H, W]`` uint8 with PIL's ``convert("L")`` (ITU-R 601-2, 16-bit fixed
    point, rounded): exact, so grey images replicated to RGB come back unchanged."""
    x = x.to(torch.int32)
    y = (x[:, 0] * 19595 + x[:, 1] * 38470 + x[:, 2] * 7471 + 0x8000) >> 16
    return y.to(torch.uint8).unsqueeze(1)


class BatchDecoder:
    """Decodes and augments a micro-batch of encoded images on ``device``: ``[B, C, size, size]`` float32, normalised.

    Args:
        size: side of the images served (the model's input size).
        mean: per-channel normalisation mean (one value per channel).
        std: per-channel normalisation std.
        in_chans: the model's channels: 3 (RGB) or 1 (PIL's greyscale, ``"L"``).
        augment: MAE's RandomResizedCrop(``scale``, ``ratio``, bicubic) + horizontal flip, one draw per sample from
            its seed; without it the evaluation transform (resize the shorter side to ``int(size / crop_pct)``,
            bicubic, centre-crop ``size``).
        device: where images are decoded (JPEGs, when CUDA) and resampled.
        crop_pct: the evaluation transform's crop fraction.
        scale: range of the crop's area, as a fraction of the image.
        ratio: range of the crop's aspect ratio.
        names: how errors name image ``index`` (``EncodedImages.name``); default ``"image INDEX"``.
    """

    def __init__(
        self,
        size: int,
        mean: Sequence[float],
        std: Sequence[float],
        in_chans: int = 3,
        augment: bool = True,
        device: torch.device | str = "cpu",
        *,
        crop_pct: float = EVAL_CROP_PCT,
        scale: Sequence[float] = (0.2, 1.0),
        ratio: Sequence[float] = (3 / 4, 4 / 3),
        names: Callable[[int], str] | None = None,
    ) -> None:
        self.mode = pil_mode(in_chans)
        if not len(mean) == len(std) == in_chans:
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} need one value per channel ({in_chans})")
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}: the evaluation crop lies inside the image")
        self.size, self.in_chans, self.augment, self.crop_pct = size, in_chans, augment, crop_pct
        self.scale, self.ratio = tuple(scale), tuple(ratio)
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.names = names

    def _name(self, index: int) -> str:
        return self.names(index) if self.names is not None else f"image {index}"

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` on the device; host tensors go through pinned memory, so the copy does not wait for the GPU."""
        if x.device == self.device:
            return x
        if self.device.type == "cuda" and x.device.type == "cpu":
            x = x if x.is_pinned() else x.pin_memory()
            return x.to(self.device, non_blocking=True)
        return x.to(self.device)

    def _pil(self, data: torch.Tensor, index: int) -> torch.Tensor:
        try:
            return _pil_tensor(decode_image(data.numpy().tobytes(), self.mode))
        except _DECODE_ERRORS as e:
            raise ValueError(f"cannot read image {self._name(index)}: {e}; {SKIP_HINT}") from None

    def _host(self, data: torch.Tensor, index: int, mode: str) -> torch.Tensor:
        """torchvision's host decoder, else PIL (which also names the file if it cannot decode it either)."""
        io = _tv_io()
        try:
            read_mode = io.ImageReadMode.RGB if mode == "RGB" else io.ImageReadMode.UNCHANGED
            return _quiet(io.decode_image, data, mode=read_mode)
        except (RuntimeError, ValueError, OSError):
            return self._pil(data, index)

    def decode(self, encoded: Sequence[torch.Tensor], indices: Sequence[int]) -> list[torch.Tensor]:
        """The images as uint8 ``[c, h, w]`` tensors on the device; ``c`` in 1-4, channels as decoded (grey, grey +
        alpha, RGB, RGBA): :meth:`__call__` converts them to the model's."""
        out: list[torch.Tensor | None] = [None] * len(encoded)
        jpegs = []
        for k, data in enumerate(encoded):
            if data.dtype != torch.uint8 or data.ndim not in (1, 3):
                raise TypeError(
                    f"image {k}: expected encoded bytes (1-D uint8) or [C, H, W] uint8, got {data.dtype} "
                    f"of shape {tuple(data.shape)}"
                )
            if data.ndim == 3:
                if data.shape[0] != self.in_chans:
                    raise ValueError(
                        f"{self._name(indices[k])} was decoded to {data.shape[0]} channels but the model takes "
                        f"{self.in_chans}: set the source's mode to {self.mode!r}"
                    )
                out[k] = data
                continue
            kind = image_kind(data)
            if kind == "jpeg":
                jpegs.append(k)
            elif kind == "png":
                out[k] = self._host(data, indices[k], "UNCHANGED")
            else:
                out[k] = self._pil(data, indices[k])
        if jpegs and self.device.type == "cuda":
            io = _tv_io()
            try:  # one batched nvJPEG call
                decoded = _quiet(
                    io.decode_jpeg, [encoded[k] for k in jpegs], mode=io.ImageReadMode.RGB, device=self.device
                )
            except RuntimeError:  # one image it does not take fails the batch: find it, decode it on the host
                decoded = []
                for k in jpegs:
                    try:
                        decoded.append(
                            _quiet(io.decode_jpeg, encoded[k], mode=io.ImageReadMode.RGB, device=self.device)
                        )
                    except RuntimeError:
                        decoded.append(self._pil(encoded[k], indices[k]))
            for k, img in zip(jpegs, decoded):
                out[k] = img
        else:
            for k in jpegs:
                out[k] = self._host(encoded[k], indices[k], "RGB")
        return [self._to_device(img) for img in out]

    def __call__(
        self, encoded: Sequence[torch.Tensor], seeds: torch.Tensor, indices: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Decode, augment and normalise one micro-batch.

        Args:
            encoded: ``B`` images: encoded bytes (1-D uint8) or decoded ``[C, H, W]`` uint8 (``C = in_chans``), as
                :func:`collate_encoded` gives them.
            seeds: ``[B]`` int64 per-sample seeds of the augmentation (unused without it).
            indices: ``[B]`` int64 indices of the images in the data set, to name them in errors.

        Returns:
            ``[B, in_chans, size, size]`` float32 on the device.

        Raises:
            ValueError: an image does not decode (naming it), or was decoded to the wrong number of channels.
        """
        n = len(encoded)
        if tuple(seeds.shape) != (n,):
            raise ValueError(f"need one seed per image: {n} images, seeds of shape {tuple(seeds.shape)}")
        index_list = list(range(n)) if indices is None else [int(i) for i in indices.tolist()]
        images = self.decode(encoded, index_list)
        heights = torch.tensor([img.shape[1] for img in images], dtype=torch.int64)  # sizes known on the host
        widths = torch.tensor([img.shape[2] for img in images], dtype=torch.int64)
        if self.augment:
            top, left, h, w, flip = crop_params(seeds.cpu().to(torch.int64), heights, widths, self.scale, self.ratio)
            # Only the crop box takes part in the resampling: copy boxes, not whole images, into the padded batch.
            boxes = torch.stack([top, left, h, w], 1).tolist()
        else:
            boxes = [[0, 0, hh, ww] for hh, ww in zip(heights.tolist(), widths.tolist())]
        out = None
        for group in self._groups(boxes):
            x = self._resample(images, boxes, group, flip if self.augment else None)
            if len(group) == n:  # the whole batch in one group (the usual case): already in order
                out = x
            else:
                if out is None:
                    out = torch.empty(n, self.in_chans, self.size, self.size, device=self.device)
                out.index_copy_(0, self._to_device(torch.tensor(group, dtype=torch.int64)), x)
        return normalize(out, self.mean, self.std)

    def _groups(self, boxes: list[list[int]]) -> list[list[int]]:
        """Images in groups (each in batch order) whose padded copy fits :data:`MAX_GROUP_ELEMENTS`, similar sizes
        together."""
        order = sorted(range(len(boxes)), key=lambda k: boxes[k][2] * boxes[k][3])
        groups, current, mh, mw = [], [], 0, 0
        for k in order:
            h, w = max(mh, boxes[k][2]), max(mw, boxes[k][3])
            if current and (len(current) + 1) * 3 * h * w > MAX_GROUP_ELEMENTS:
                groups.append(sorted(current))
                current, h, w = [], boxes[k][2], boxes[k][3]
            current.append(k)
            mh, mw = h, w
        return [*groups, sorted(current)]

    def _resample(
        self, images: list[torch.Tensor], boxes: list[list[int]], group: list[int], flip: torch.Tensor | None
    ) -> torch.Tensor:
        """The group's boxes, zero-padded into one batch, converted to the model's channels and resampled."""
        mh, mw = max(boxes[k][2] for k in group), max(boxes[k][3] for k in group)
        # PIL's "L" is computed from RGB: then every image of the group goes in as RGB (grey replicated, exact).
        rgb = self.in_chans == 3 or any(images[k].shape[0] >= 3 for k in group)
        batch = torch.zeros(len(group), 3 if rgb else 1, mh, mw, dtype=torch.uint8, device=self.device)
        for j, k in enumerate(group):
            t, lf, h, w = boxes[k]
            img = images[k]
            img = img[:1] if img.shape[0] <= 2 else img[:3]  # alpha dropped, as PIL's conversions to L and RGB do
            batch[j, :, :h, :w] = img[:, t : t + h, lf : lf + w]  # one channel broadcasts to three
        if rgb and self.in_chans == 1:
            batch = _luma(batch)
        h = torch.tensor([boxes[k][2] for k in group], dtype=torch.int64)
        w = torch.tensor([boxes[k][3] for k in group], dtype=torch.int64)
        if flip is not None:
            params = self._to_device(torch.stack([h, w, flip[group].to(torch.int64)]))
            zero = torch.zeros(len(group), dtype=torch.int64, device=self.device)
            return resized_crop(batch, zero, zero, params[0], params[1], params[2].bool(), self.size)
        geometry = [eval_geometry(boxes[k][2], boxes[k][3], self.size, self.crop_pct) for k in group]
        new_h, new_w, top, left = (torch.tensor(v, dtype=torch.int64) for v in zip(*geometry))
        ints = self._to_device(torch.stack([top, left, h, w]))
        scales = self._to_device(torch.stack([h.double() / new_h, w.double() / new_w]))  # PIL's (in size) / (out size)
        wy = resize_matrix(ints[0], scales[0], ints[2], self.size, mh)
        wx = resize_matrix(ints[1], scales[1], ints[3], self.size, mw)
        return resample(batch, wy, wx)
