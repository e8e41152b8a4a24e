"""Learning-rate schedule shared by the linear probe and fine-tuning (MAE's ``util/lr_sched.py``)."""

from __future__ import annotations

import math

import torch


def warmup_cosine(epoch: float, lr: float, warmup_epochs: float, epochs: float, min_lr: float = 0.0) -> float:
    """Linear warm-up from 0 to ``lr`` over ``warmup_epochs``, then half-cycle cosine to ``min_lr`` at ``epochs``.

    ``epoch`` is fractional (``epoch + step / steps_per_epoch``): the rate changes every iteration, as in MAE.
    """
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    progress = (epoch - warmup_epochs) / max(epochs - warmup_epochs, 1e-12)
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's rate to ``lr`` times its ``lr_scale`` (timm's layer-decay groups carry one; default 1)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (timm's Mixup and RandAugment draw from the first two)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 -- timm's Mixup draws from NumPy's global generator
    torch.manual_seed(seed)
