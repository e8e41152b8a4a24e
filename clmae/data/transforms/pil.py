"""Image transforms on PIL images (torchvision, timm), with the numbers of :mod:`clmae.data.transforms.numbers`:
MAE's pretraining augmentation, the evaluation transform (also from a timm data config) and fine-tuning's training
transform (timm's, with Pillow's posterize at 0 bits kept working)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import timm
from PIL import Image, ImageOps
from torchvision import transforms as T

from .numbers import EVAL_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, eval_resize


def pretrain_transform(
    img_size: int = 224, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> T.Compose:
    """MAE's pretraining augmentation (``main_pretrain.py``): RandomResizedCrop(scale 0.2-1, bicubic) + flip."""
    return T.Compose(
        [
            T.RandomResizedCrop(img_size, scale=(0.2, 1.0), interpolation=T.InterpolationMode.BICUBIC),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def eval_transform(
    img_size: int = 224,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    crop_pct: float = EVAL_CROP_PCT,
    interpolation: str = "bicubic",
) -> T.Compose:
    """MAE's evaluation transform: resize to ``img_size / crop_pct`` (256 for 224) with the ``interpolation`` filter,
    center-crop ``img_size``."""
    return T.Compose(
        [
            T.Resize(eval_resize(img_size, crop_pct), interpolation=T.InterpolationMode(interpolation)),
            T.CenterCrop(img_size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )


def eval_transform_for(cfg: dict[str, Any]) -> T.Compose:
    """:func:`clmae.data.eval_transform` (resize to ``size / crop_pct`` -> center-crop ``size`` -> tensor ->
    normalise) with the fields of a timm data config: ``input_size``, ``mean``, ``std``, ``crop_pct`` and the resize
    filter ``interpolation``.
    """
    size, crop_mode = tuple(cfg["input_size"][-2:]), cfg.get("crop_mode") or "center"
    if size[0] != size[1] or crop_mode != "center":
        raise ValueError(
            f"evaluation center-crops square images; this model's pretrained_cfg asks for input_size "
            f"{cfg['input_size']} with crop_mode {crop_mode!r}: set a square input_size and crop_mode 'center' in "
            "its config.json"
        )
    keys = ("mean", "std", "crop_pct", "interpolation")
    return eval_transform(size[0], **{k: cfg[k] for k in keys if cfg.get(k)})


def train_transform(
    cfg: dict[str, Any],
    *,
    scale: tuple[float, float] = (0.08, 1.0),
    hflip: float = 0.5,
    auto_augment: str | None = None,
    re_prob: float = 0.0,
):
    """timm's training transform: RandomResizedCrop(``scale``) + flip (+ RandAugment, random erasing), normalised.

    No colour jitter (MAE's linear probe and fine-tuning use none).
    """
    tf = timm.data.create_transform(
        cfg["input_size"],
        is_training=True,
        scale=scale,
        hflip=hflip,
        color_jitter=None,
        auto_augment=auto_augment,
        interpolation=cfg.get("interpolation", "bicubic"),
        mean=cfg["mean"],
        std=cfg["std"],
        re_prob=re_prob,
        re_mode="pixel",
        re_count=1,
    )
    _fix_posterize(tf)
    return tf


def _posterize(img: Image.Image, bits_to_keep: int, **_: Any) -> Image.Image:
    """timm's ``posterize``, with 0 bits giving a black image as Pillow did before it started to reject 0."""
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def _fix_posterize(transform: Any) -> None:
    """Let MAE's RandAugment (``rand-m9-mstd0.5-inc1``) run on current Pillow.

    At magnitude 10 timm's increasing posterize keeps 0 bits; Pillow 13 raises a ``ValueError`` for that instead of
    returning a black image. The posterize ops of the built transform get :func:`_posterize`, which keeps the old
    behaviour; nothing else changes.
    """
    from timm.data import auto_augment

    for t in getattr(transform, "transforms", []):
        for op in getattr(t, "ops", []):
            if getattr(op, "aug_fn", None) is auto_augment.posterize:
                op.aug_fn = _posterize
