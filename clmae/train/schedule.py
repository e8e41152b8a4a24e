"""The learning-rate schedule of MAE and CL-MAE: linear warm-up, then a half-cycle cosine, stepped per iteration.

As MAE's ``util/lr_sched.adjust_learning_rate``, but counted in optimizer updates instead of fractional epochs (the
same curve; with gradient accumulation it moves once per update, as MAE's does).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def check_schedule(epochs: float, warmup_epochs: float) -> None:
    """A ``ValueError`` unless ``epochs >= 1`` and ``0 <= warmup_epochs <= epochs``."""
    if epochs < 1 or not 0 <= warmup_epochs <= epochs:
        raise ValueError(f"need epochs >= 1 and 0 <= warmup_epochs <= epochs, got {epochs}, {warmup_epochs}")


def peak_lr(base_lr: float, effective_batch: int, lr: float | None = None) -> float:
    """``lr`` if given, else the linear scaling rule ``base_lr * effective_batch / 256`` (MAE, Goyal et al.)."""
    return lr if lr is not None else base_lr * effective_batch / 256


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, min_lr: float = 0.0) -> float:
    """Learning rate of update ``step`` (0-based) of ``total_steps``.

    ``peak * step / warmup_steps`` during warm-up (0 at the first update, as MAE), then
    ``min_lr + (peak - min_lr) * (1 + cos(pi * (step - warmup_steps) / (total_steps - warmup_steps))) / 2``.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"step must be in [0, {total_steps}), got {step}")
    if step < warmup_steps:
        return peak * step / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + (peak - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizers: Iterable[torch.optim.Optimizer | None], lr: float) -> None:
    """Set ``lr`` on every parameter group of every optimizer (``None`` entries are skipped)."""
    for opt in optimizers:
        if opt is not None:
            for group in opt.param_groups:
                group["lr"] = lr
