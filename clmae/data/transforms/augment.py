"""MAE's pretraining augmentation (RandomResizedCrop + horizontal flip) for whole batches on their own device.

Every sample gets its own random draws from its own 63-bit seed (the trainer's ``item_seed(seed, epoch, position)``),
so a batch's augmentation does not depend on the batch it is in, on the device, on the number of processes or on
where a run was resumed -- the guarantees of :class:`~clmae.data.sampler.SeededDataset`, without a Python call or a
PIL image per sample.

* :func:`uniform` -- counter-based random numbers: a 4-round Feistel network over the seed's two 32-bit halves,
  with murmur3's 32-bit finaliser as the round function. Integer arithmetic only, exact on every device.
* :func:`crop_params` -- torchvision's ``RandomResizedCrop.get_params``, vectorised: 10 attempts of area in
  ``scale`` and log-uniform aspect ratio in ``ratio``, the first that fits, else the centre-crop fallback; and a
  flip with probability 1/2.
* :func:`resized_crop` -- crop, resize and flip as one pair of resampling matrices per sample (``out = Wy @ x @
  Wx^T``), with PIL's bicubic filter (a = -0.5, widened when shrinking: antialiased) and PIL's edge handling, so a
  uint8 image gives what torchvision's PIL pipeline gives (up to one grey level).

torchvision's batched transforms draw one set of parameters per batch, and its per-sample transforms need one call
(and, for PIL, one image) per sample; this module exists to do per-sample draws in one batched call on the GPU.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

M32 = 0xFFFFFFFF
DRAWS = 23  # 10 attempts x (area, ratio), top, left, flip
_ROUND_KEYS = (0x9E3779B9, 0x7F4A7C15, 0x85EBCA6B, 0xC2B2AE35)


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``x * c mod 2^32`` for uint32 values held in int64, without signed overflow (16-bit halves)."""
    lo = (x & 0xFFFF) * c
    hi = (((x >> 16) * c) & 0xFFFF) << 16
    return (lo + hi) & M32


def _fmix32(h: torch.Tensor) -> torch.Tensor:
    """murmur3's 32-bit finaliser (Appleby, MurmurHash3 ``fmix32``)."""
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    return h ^ (h >> 16)


def uniform(seeds: torch.Tensor, draws: int) -> torch.Tensor:
    """``draws`` uniform numbers in (0, 1) per seed, a function of the seed and the draw's index only.

    Args:
        seeds: ``[N]`` int64, non-negative.
        draws: numbers per seed.

    Returns:
        ``[N, draws]`` float64, 53 random bits each.
    """
    if seeds.dtype != torch.int64:
        raise TypeError(f"seeds must be int64, got {seeds.dtype}")
    s = seeds.reshape(-1, 1)
    d = torch.arange(draws, device=seeds.device, dtype=torch.int64).reshape(1, -1)
    left = s & M32
    right = ((s >> 32) & M32) ^ _mul32(d + 1, 0x9E3779B9)  # the draw's counter enters one half
    for key in _ROUND_KEYS:  # a Feistel network is a bijection: distinct (seed, draw) give distinct 64-bit words
        left, right = right, left ^ _fmix32(right ^ key)
    bits = (left << 21) | (right >> 11)  # 32 + 21 = 53 bits
    return (bits.double() + 0.5) / float(1 << 53)


def crop_params(
    seeds: torch.Tensor,
    height: int | torch.Tensor,
    width: int | torch.Tensor,
    scale: Sequence[float] = (0.2, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> tuple[torch.Tensor, ...]:
    """Per-sample crop boxes and flips, as torchvision's ``RandomResizedCrop(scale, ratio)`` + ``RandomHorizontalFlip``.

    Args:
        seeds: ``[N]`` int64 per-sample seeds.
        height: image height(s): an int or ``[N]`` (images of different sizes).
        width: image width(s), as ``height``.
        scale: range of the crop's area as a fraction of the image.
        ratio: range of the crop's aspect ratio (width / height), drawn log-uniformly.

    Returns:
        ``(top, left, h, w, flip)``: ``[N]`` int64 boxes (rows ``top:top+h``, columns ``left:left+w``) and ``[N]``
        bool flips.
    """
    dev = seeds.device
    u = uniform(seeds, DRAWS)
    H, W = (_per_sample(v, len(seeds), dev) for v in (height, width))
    area = (H * W).unsqueeze(1)
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    target = area * (scale[0] + (scale[1] - scale[0]) * u[:, 0:20:2])  # [N, 10] attempts
    aspect = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * u[:, 1:20:2])
    w = torch.round(torch.sqrt(target * aspect))  # round half to even, as Python's round()
    h = torch.round(torch.sqrt(target / aspect))
    fits = (w > 0) & (w <= W.unsqueeze(1)) & (h > 0) & (h <= H.unsqueeze(1))
    first = torch.argmax(fits.to(torch.uint8), dim=1, keepdim=True)  # first fitting attempt (0 if none)
    w, h = w.gather(1, first)[:, 0], h.gather(1, first)[:, 0]
    found = fits.any(1)
    # None fits (rare): torchvision's fallback, the whole image clamped to the ratio range, centred.
    in_ratio = W / H
    fw = torch.where(in_ratio > ratio[1], torch.round(H * ratio[1]), W)
    fh = torch.where(in_ratio < ratio[0], torch.round(W / ratio[0]), H)
    fw = torch.where(in_ratio < ratio[0], W, fw)
    fh = torch.where(in_ratio > ratio[1], H, fh)
    w, h = torch.where(found, w, fw), torch.where(found, h, fh)
    top = torch.where(found, torch.floor(u[:, 20] * (H - h + 1)), torch.floor((H - h) / 2))
    left = torch.where(found, torch.floor(u[:, 21] * (W - w + 1)), torch.floor((W - w) / 2))
    flip = u[:, 22] < 0.5
    return top.long(), left.long(), h.long(), w.long(), flip


def _per_sample(value: int | torch.Tensor, n: int, device: torch.device) -> torch.Tensor:
    """``[n]`` float64 on ``device``; an int becomes a fill (no host-to-device copy, so no synchronisation)."""
    if isinstance(value, torch.Tensor):
        return value.to(device, torch.float64).expand(n)
    return torch.full((n,), float(value), dtype=torch.float64, device=device)


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    """PIL's bicubic kernel (a = -0.5, ``libImaging/Resample.c``)."""
    a = -0.5
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _bilinear(x: torch.Tensor) -> torch.Tensor:
    """PIL's bilinear (triangle) kernel."""
    return (1 - x.abs()).clamp_min(0)


KERNELS = {"bicubic": _bicubic, "bilinear": _bilinear}


def resample_matrix(
    start: torch.Tensor, length: torch.Tensor, size: int, in_size: int, filter: str = "bicubic"
) -> torch.Tensor:
    """Per-sample matrices ``[N, size, in_size]`` that resample pixels ``start:start+length`` of a line to ``size``.

    As PIL's ``ImagingResample`` on the cropped line: output pixel ``o`` is centred at ``(o + 0.5) * length / size``
    inside the crop, the kernel (PIL's ``filter``: ``"bicubic"`` or ``"bilinear"``) is widened by the shrink factor
    (antialiasing), only pixels inside the crop take part and each row is normalised to sum to 1.
    """
    scale = (length.double() / size).unsqueeze(1)  # [N, 1]
    stretch = scale.clamp(min=1.0)
    centre = (torch.arange(size, device=start.device, dtype=torch.float64) + 0.5).unsqueeze(0) * scale  # [N, size]
    x = torch.arange(in_size, device=start.device, dtype=torch.float64).unsqueeze(0) - start.unsqueeze(1).double()
    inside = (x >= 0) & (x < length.unsqueeze(1))  # [N, in_size], positions within the crop
    k = KERNELS[filter]((x.unsqueeze(1) - centre.unsqueeze(2) + 0.5) / stretch.unsqueeze(2)) * inside.unsqueeze(1)
    return k / k.sum(2, keepdim=True)


def resized_crop(
    images: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    h: torch.Tensor,
    w: torch.Tensor,
    flip: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Crop box ``(top, left, h, w)`` of each image, resized to ``size`` x ``size`` (bicubic), mirrored where ``flip``.

    Args:
        images: ``[N, C, H, W]``: uint8 (each resampling pass is rounded to a grey level, as PIL does on 8-bit
            images) or float (no rounding or clamping).
        top: ``[N]`` first row of each box.
        left: ``[N]`` first column.
        h: ``[N]`` box height.
        w: ``[N]`` box width.
        flip: ``[N]`` bool, mirror left-right.
        size: output side.

    Returns:
        ``[N, C, size, size]`` float32, in [0, 1] for uint8 input (pixel / 255), else in the input's units.
    """
    n, _, H, W = images.shape
    if H == W:  # rows and columns in one call: half the kernel launches, which small models feel
        both = resample_matrix(torch.cat([top, left]), torch.cat([h, w]), size, H)
        wy, wx = both[:n], both[n:]
    else:
        wy, wx = resample_matrix(top, h, size, H), resample_matrix(left, w, size, W)
    wy = wy.float()
    wx = torch.where(flip.view(n, 1, 1), wx.flip(1), wx).float()
    x = images.float()
    quantized = images.dtype == torch.uint8
    x = torch.einsum("nchw,nxw->nchx", x, wx)  # PIL resamples horizontally first, then vertically
    if quantized:
        x = x.round().clamp(0, 255)
    x = torch.einsum("nyh,nchx->ncyx", wy, x)
    if quantized:
        x = x.round().clamp(0, 255) / 255.0
    return x


def random_resized_crop(
    images: torch.Tensor,
    seeds: torch.Tensor,
    size: int,
    scale: Sequence[float] = (0.2, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """MAE's pretraining augmentation of a batch, one draw per sample: ``RandomResizedCrop(size, scale, ratio,
    bicubic)`` then ``RandomHorizontalFlip()``.

    Args:
        images: ``[N, C, H, W]`` uint8 or float, on any device.
        seeds: ``[N]`` int64 per-sample seeds on the same device.
        size: output side.
        scale: crop area range, as a fraction of the image.
        ratio: crop aspect-ratio range.

    Returns:
        ``[N, C, size, size]`` float32 (uint8 input: in [0, 1]).
    """
    if images.ndim != 4:
        raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
    if seeds.shape != (images.shape[0],):
        raise ValueError(f"need one seed per image: {images.shape[0]} images, seeds of shape {tuple(seeds.shape)}")
    params = crop_params(seeds, images.shape[2], images.shape[3], scale, ratio)
    return resized_crop(images, *params, size)


def resize_matrix(
    first: torch.Tensor, scale: torch.Tensor, length: torch.Tensor, size: int, in_size: int
) -> torch.Tensor:
    """Per-sample matrices ``[N, size, in_size]``: pixels ``first:first+size`` of each line resized by ``1 / scale``.

    As PIL's ``ImagingResample`` of a whole line of ``length`` pixels to ``round(length / scale)`` pixels, of which
    ``size`` are kept from pixel ``first`` on (a resize followed by a crop, the evaluation transform): output pixel
    ``o`` is centred at ``(first + o + 0.5) * scale``, the kernel is widened by the shrink factor, pixels at or beyond
    ``length`` (padding) take no part and each row is normalised to sum to 1. Unlike :func:`resample_matrix`, the
    kernel reaches outside the kept pixels, up to the line's own ends, as in a resize of the whole image.

    Args:
        first: ``[N]`` first kept pixel of the resized line.
        scale: ``[N]`` float64 input pixels per output pixel (``length / resized length``).
        length: ``[N]`` the line's own length (the rest of ``in_size`` is padding).
        size: output pixels per line.
        in_size: input pixels per line, padding included.
    """
    scale = scale.double().unsqueeze(1)  # [N, 1]
    stretch = scale.clamp(min=1.0)
    out = torch.arange(size, device=first.device, dtype=torch.float64).unsqueeze(0)
    centre = (out + first.double().unsqueeze(1) + 0.5) * scale  # [N, size]
    x = torch.arange(in_size, device=first.device, dtype=torch.float64).unsqueeze(0)
    inside = x < length.unsqueeze(1)  # [N, in_size]
    k = _bicubic((x.unsqueeze(1) - centre.unsqueeze(2) + 0.5) / stretch.unsqueeze(2)) * inside.unsqueeze(1)
    return k / k.sum(2, keepdim=True)


def resample(images: torch.Tensor, wy: torch.Tensor, wx: torch.Tensor) -> torch.Tensor:
    """``wy @ image @ wx^T`` per sample and channel, horizontally first, rounded per pass for uint8 as PIL does.

    Args:
        images: ``[N, C, H, W]`` uint8 or float.
        wy: ``[N, size_y, H]`` row resampling matrices (:func:`resample_matrix`, :func:`resize_matrix`).
        wx: ``[N, size_x, W]`` column resampling matrices.

    Returns:
        ``[N, C, size_y, size_x]`` float32, in [0, 1] for uint8 input (pixel / 255), else in the input's units.
    """
    quantized = images.dtype == torch.uint8
    x = torch.einsum("nchw,nxw->nchx", images.float(), wx.float())
    if quantized:
        x = x.round().clamp(0, 255)
    x = torch.einsum("nyh,nchx->ncyx", wy.float(), x)
    if quantized:
        x = x.round().clamp(0, 255) / 255.0
    return x
