"""Image transforms of MAE pretraining and evaluation on PIL images (torchvision), with the numbers of
:mod:`clmae.data.preprocess`."""

from __future__ import annotations

from collections.abc import Sequence

from torchvision import transforms as T

from .preprocess import EVAL_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, eval_resize


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
