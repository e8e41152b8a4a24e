"""The evaluation transform on uint8 tensors where it moves no pixel: images at the model's size whose resize and
centre crop change nothing are only divided by 255 and normalised (:func:`~clmae.data.transforms.numbers.normalize`),
with no PIL image. Evaluation's feature extraction and fine-tuning's held-out split take this path."""

from __future__ import annotations

from typing import Any

import torch

from .numbers import EVAL_CROP_PCT, IMAGENET_MEAN, IMAGENET_STD, eval_is_identity, normalize


def identity_at_model_size(cfg: dict[str, Any], image_hw: tuple[int, ...]) -> bool:
    """True when :func:`~.pil.eval_transform_for` ``(cfg)`` leaves images of ``image_hw`` (H, W) at their size:
    square images of the model's ``input_size`` whose resize (to ``int(size / crop_pct)``) and centre crop change
    nothing, so the transform is only ``pixel / 255`` and the normalisation (1- or 3-channel models)."""
    size, crop_mode = tuple(cfg["input_size"][-2:]), cfg.get("crop_mode") or "center"
    if cfg["input_size"][0] not in (1, 3) or crop_mode != "center" or size[0] != size[1]:
        return False
    return eval_is_identity(image_hw, size[0], cfg.get("crop_pct") or EVAL_CROP_PCT)


def normalize_uint8(images: torch.Tensor, cfg: dict[str, Any]) -> torch.Tensor:
    """uint8 greyscale images ``[B, H, W]`` -> model input ``[B, C, H, W]`` float32, on their device: what
    ``ToTensor`` + ``Normalize`` of :func:`~.pil.eval_transform_for` give (bit for bit) for images it does not resize;
    3-channel models get the grey channel three times, as PIL's ``convert("RGB")``."""
    x = images.unsqueeze(1)
    if cfg["input_size"][0] == 3:
        x = x.expand(-1, 3, -1, -1)
    return normalize(x, cfg.get("mean") or IMAGENET_MEAN, cfg.get("std") or IMAGENET_STD)
