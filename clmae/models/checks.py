"""The input check of clmae's models: a float image batch of the size and channels the encoder was built for."""

from __future__ import annotations

import torch
from timm.models.vision_transformer import VisionTransformer

from .._compat import autocast_enabled


def check_input(model: VisionTransformer, images: torch.Tensor) -> None:
    """Raise a ``ValueError`` naming the fix unless ``images`` is a batch ``model`` takes.

    The check is explicit (no hook on the model): call it on a batch before a long job to fail with a clear message
    instead of a shape error deep inside the network.

    Args:
        model: a timm ``VisionTransformer`` (e.g. from :func:`clmae.load_pretrained`).
        images: the batch, ``[N, C, H, W]``, float, preprocessed as ``model.pretrained_cfg`` says.
    """
    embed = model.patch_embed
    c, (h, w) = embed.proj.in_channels, embed.img_size
    expected = f"a float tensor [N, {c}, {h}, {w}]"
    fix = (
        "preprocess with timm.data.create_transform(**timm.data.resolve_data_config({}, model=model)), or build the "
        "model with img_size=... (positions are resampled)"
    )
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be {expected}, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"images must be {expected}, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(
            f"images must be {expected}, got dtype {images.dtype}; convert with imgs.float() / 255 and normalise"
        )
    weight_dtype = embed.proj.weight.dtype
    if images.dtype != weight_dtype and not autocast_enabled(images.device):
        raise ValueError(
            f"images are {images.dtype} but the model's weights are {weight_dtype}; convert them with "
            f"imgs.to({weight_dtype}) or run under torch.autocast"
        )
    if images.shape[1] != c:
        raise ValueError(f"images must have {c} channel(s) ({expected}), got {images.shape[1]}; {_channel_fix(c)}")
    dynamic = getattr(model, "dynamic_img_size", False) or getattr(embed, "dynamic_img_pad", False)
    if not dynamic and tuple(images.shape[2:]) != (h, w):
        raise ValueError(f"images must be {h}x{w} ({expected}), got {images.shape[2]}x{images.shape[3]}; {fix}")


def _channel_fix(in_chans: int) -> str:
    """What to do about images of the wrong channel count. timm's transform keeps a PIL image's channels (an RGB
    image stays RGB), so the image's mode must be the model's first; or the model is made for the other mode."""
    transform = "timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))"
    if in_chans == 1:
        return (
            f'preprocess with timm on the image made greyscale first: {transform}(img.convert("L")) (timm\'s transform '
            "keeps an RGB image's 3 channels); or, for RGB input, load the weights with in_chans=3 "
            "(clmae.load_pretrained(NAME, in_chans=3): the patch embedding adapted as timm adapts it)"
        )
    if in_chans == 3:
        return (
            f'preprocess with timm on the image made RGB first: {transform}(img.convert("RGB")); or, for greyscale '
            "input, load the weights with in_chans=1 (clmae.load_pretrained(NAME, in_chans=1))"
        )
    return f"preprocess with {transform} on images of {in_chans} channels"
