"""How an image becomes a model input: the one place for the numbers and arithmetic every input pipeline shares.

* :func:`normalize`: subtract the mean, divide by the std, per channel (:func:`denormalize` undoes it for
  pictures); written once for every tensor path (device-held Fashion-MNIST, batch decoding, fine-tuning's device
  augmentation, evaluation's uint8 tensors, :func:`~clmae.data.fashion_mnist.to_float`); the PIL paths get the
  same numbers from torchvision's ``ToTensor`` + ``Normalize`` (:mod:`clmae.data.transforms.pil`).
* the default statistics: ImageNet's mean/std (timm's constants) and their one-channel form for greyscale models;
* the evaluation geometry: resize the shorter side to ``int(size / crop_pct)``, centre-crop ``size``;
* :func:`pil_mode`: the PIL mode of a model's input.

(The per-patch normalised-pixel target of ``norm_pix_loss``, :func:`clmae.models.losses.masked_mse`, is not image
preprocessing: it normalises each patch by its own statistics inside the loss.)
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from timm.data import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

IMAGENET_MEAN: tuple[float, ...] = tuple(IMAGENET_DEFAULT_MEAN)
IMAGENET_STD: tuple[float, ...] = tuple(IMAGENET_DEFAULT_STD)
EVAL_CROP_PCT: float = DEFAULT_CROP_PCT  # MAE's and timm's evaluation crop: resize 256, centre-crop 224


def fit_channels(values: Sequence[float], in_chans: int) -> tuple[float, ...]:
    """Per-channel statistics for a model of ``in_chans`` channels: ``values`` as they are when they have one value
    per channel, else their average (rounded to 4 places) repeated, e.g. ImageNet's three means for a greyscale
    model (PIL's ``"L"`` mixes the three channels)."""
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    return (round(sum(values) / len(values), 4),) * in_chans


# 1-channel models on image files: ImageNet's statistics averaged over the channels (0.449, 0.226)
GREY_MEAN: tuple[float, ...] = fit_channels(IMAGENET_MEAN, 1)
GREY_STD: tuple[float, ...] = fit_channels(IMAGENET_STD, 1)


def default_mean_std(in_chans: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``(mean, std)`` of a model whose configuration gives none: ImageNet's, fitted to ``in_chans``."""
    return fit_channels(IMAGENET_MEAN, in_chans), fit_channels(IMAGENET_STD, in_chans)


@functools.lru_cache(maxsize=64)
def _stats(
    mean: tuple[float, ...], std: tuple[float, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device and dtype: a tensor built per batch would be a host-to-device copy per step.
    return (
        torch.tensor(mean, dtype=dtype, device=device).view(-1, 1, 1),
        torch.tensor(std, dtype=dtype, device=device).view(-1, 1, 1),
    )


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Images normalised per channel, the model's input.

    The arithmetic is torchvision's ``ToTensor`` (uint8 ``.to(float32).div(255)``) and ``F.normalize``
    (``sub(mean).div(std)`` with ``[C, 1, 1]`` tensors), so on the CPU a tensor path gives the PIL path's numbers for
    the same pixels bit for bit. Mean and std are tensors on ``x``'s device even for one channel: on CUDA a division
    by a Python number is a multiplication by its reciprocal (PyTorch's ``div_true_kernel_cuda``), which can differ
    from a division in the last bit.

    Args:
        x: ``[C, H, W]`` or ``[B, C, H, W]``: uint8 pixels (divided by 255 first) or floats in [0, 1].
        mean: per-channel mean, one value per channel of ``x`` (or one for all).
        std: per-channel std, as ``mean``.

    Returns:
        ``x``'s shape, float32 for uint8 input (else ``x``'s dtype), on ``x``'s device.
    """
    if x.dtype == torch.uint8:
        x = x.to(torch.float32).div(255)
    mean, std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    if len(mean) != len(std) or len(mean) not in (1, x.shape[-3]):
        raise ValueError(
            f"mean {mean} and std {std} need one value per channel ({x.shape[-3]} in images of shape "
            f"{tuple(x.shape)}), or one for all"
        )
    mean, std = _stats(mean, std, x.device, x.dtype)
    return (x - mean) / std


def denormalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """:func:`normalize` undone (``x * std + mean`` per channel): model-space images back to [0, 1] pixels, for
    pictures. ``x`` is float, ``[C, H, W]`` or ``[B, C, H, W]``; ``mean`` and ``std`` as for :func:`normalize`."""
    m, s = _stats(tuple(float(v) for v in mean), tuple(float(v) for v in std), x.device, x.dtype)
    return x * s + m


def eval_resize(size: int, crop_pct: float) -> int:
    """Side the evaluation transform resizes the shorter side to before its centre crop of ``size``: ``int(size /
    crop_pct)`` (timm's and MAE's rule; 256 for 224 at 0.875)."""
    if not crop_pct > 0:
        raise ValueError(f"crop_pct must be positive, got {crop_pct}: the crop is this fraction of the resized image")
    return int(size / crop_pct)


def eval_geometry(height: int, width: int, size: int, crop_pct: float) -> tuple[int, int, int, int]:
    """``(resized_h, resized_w, top, left)`` of the evaluation transform on a ``height`` x ``width`` image: the shorter
    side resized to :func:`eval_resize` (the longer one in proportion, truncated), then a centred ``size`` crop, as
    torchvision's ``Resize(int)`` + ``CenterCrop``."""
    short_side = eval_resize(size, crop_pct)
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = short_side, int(short_side * long / short)
    new_w, new_h = (new_short, new_long) if width <= height else (new_long, new_short)
    return new_h, new_w, round((new_h - size) / 2.0), round((new_w - size) / 2.0)


def eval_is_identity(image_hw: Sequence[int], size: int, crop_pct: float) -> bool:
    """True when the evaluation transform leaves images of ``image_hw`` (H, W) as they are: square images of
    ``size`` whose resize and centre crop move no pixel, so only :func:`normalize` remains."""
    if tuple(int(v) for v in image_hw) != (size, size):
        return False
    return eval_geometry(size, size, size, crop_pct) == (size, size, 0, 0)


def pil_mode(in_chans: int) -> str:
    """The PIL mode of a model's input: ``"L"`` for 1 channel, ``"RGB"`` for 3; a ``ValueError`` otherwise."""
    if in_chans not in (1, 3):
        raise ValueError(
            f"images are read as greyscale (1 channel) or RGB (3 channels); a model with {in_chans} input "
            "channels does not fit, pick one with 1 or 3"
        )
    return "L" if in_chans == 1 else "RGB"
