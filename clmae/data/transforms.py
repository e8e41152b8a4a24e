"""Image transforms of MAE pretraining (torchvision)."""

from __future__ import annotations

from collections.abc import Sequence

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision import transforms as T


def pretrain_transform(
    img_size: int = 224, mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD
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
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    crop_pct: float = 0.875,
    interpolation: str = "bicubic",
) -> T.Compose:
    """MAE's evaluation transform: resize to ``img_size / crop_pct`` (256 for 224) with the ``interpolation`` filter,
    center-crop ``img_size``."""
    return T.Compose(
        [
            T.Resize(int(img_size / crop_pct), interpolation=T.InterpolationMode(interpolation)),
            T.CenterCrop(img_size),
            T.ToTensor(),
            T.Normalize(mean, std),
        ]
    )
