"""Linear probe as MAE does it: frozen encoder, class token, BatchNorm without affine + linear, LARS, warm-up + cosine.

Two variants share the head, the optimizer and the schedule (MAE's ``main_linprobe.py``):

* ``mode="mae"`` -- the encoder runs in the loop on augmented images (RandomResizedCrop + horizontal flip), as MAE.
* ``mode="cached"`` -- the fast deterministic variant: features are extracted once (no augmentation, the cache is
  reused) and only the head trains. For small data sets and for raw pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from timm.layers import trunc_normal_
from timm.optim import Lars
from timm.utils import random_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._options import attributes_doc, check_fields, option
from .._progress import EpochLog
from ..train.schedule import check_schedule, lr_at, peak_lr, set_lr
from .knn import topk_accuracy


@dataclass
class LinearProbeConfig:
    """Hyper-parameters of the linear probe (defaults: MAE's recipe)."""

    epochs: int = option(90, "training epochs (MAE: 90).")
    warmup_epochs: int = option(10, "linear warm-up epochs (MAE: 10).")
    batch_size: int = option(
        256, "images per step; the rate is ``base_lr * batch_size / 256``.", at_least=2, why="BatchNorm needs it"
    )
    base_lr: float = option(0.1, "rate at batch 256 (MAE: 0.1).")
    min_lr: float = option(0.0, "rate at the end of the cosine.")
    momentum: float = option(0.9, "LARS momentum (MAE: 0.9).")
    weight_decay: float = option(0.0, "(MAE: 0).")
    pool: str = option("cls", 'feature: ``"cls"`` (MAE) or ``"avg"`` (mean of patch tokens).', choices=("cls", "avg"))
    mode: str = option(
        "mae",
        '``"cached"`` (features once, fast, deterministic) or ``"mae"`` (encoder in the loop, augmented).',
        choices=("cached", "mae"),
    )
    crop_min: float = option(
        0.08, '``mode="mae"``: smallest RandomResizedCrop area fraction (MAE: torchvision\'s 0.08).', above=0, at_most=1
    )
    hflip: float = option(0.5, '``mode="mae"``: horizontal-flip probability (MAE: 0.5).', at_least=0, at_most=1)
    seed: int = option(0, "seeds the head's initialisation, the shuffling and the augmentation.")

    def __post_init__(self) -> None:
        check_schedule(self.epochs, self.warmup_epochs)
        check_fields(self)

    @property
    def lr(self) -> float:
        """Peak rate: ``base_lr * batch_size / 256`` (MAE's scaling rule)."""
        return peak_lr(self.base_lr, self.batch_size)


LinearProbeConfig.__doc__ = attributes_doc(LinearProbeConfig)


class LinearHead(nn.Sequential):
    """``BatchNorm1d(affine=False, eps=1e-6)`` then ``Linear``, the weight trunc-normal with std 0.01 (MAE)."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__(nn.BatchNorm1d(dim, affine=False, eps=1e-6), nn.Linear(dim, num_classes))
        trunc_normal_(self[1].weight, std=0.01)
        nn.init.zeros_(self[1].bias)


def lars(module: nn.Module, lr: float, momentum: float = 0.9, weight_decay: float = 0.0) -> Lars:
    """timm's LARS as MAE's ``util/lars.py``: the trust ratio (coefficient 0.001) on weights, not on biases.

    MAE applies the layer-wise adaptation to every parameter with more than one dimension even without weight decay;
    timm does that with ``always_adapt=True``, so weights and 1-D parameters go in separate groups.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.ndim > 1], "always_adapt": True, "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim <= 1], "always_adapt": False, "weight_decay": 0.0},
    ]
    return Lars([g for g in groups if g["params"]], lr=lr, momentum=momentum, trust_coeff=0.001)


def train_head(
    head: nn.Module, batches: Callable[[int], Iterator[tuple[torch.Tensor, torch.Tensor]]], steps: int, cfg
) -> list[float]:
    """Train ``head`` with LARS and warm-up + cosine, rate updated every step (MAE's per-iteration schedule).

    Args:
        head: the classifier.
        batches: ``batches(epoch)`` yields ``(features, labels)`` for one epoch, ``steps`` of them.
        steps: steps per epoch.
        cfg: a :class:`LinearProbeConfig`.

    Returns:
        The mean training loss of each epoch.
    """
    opt = lars(head, cfg.lr, cfg.momentum, cfg.weight_decay)
    total_steps, warmup_steps = cfg.epochs * steps, cfg.warmup_epochs * steps
    losses = []
    dev = next(head.parameters()).device
    epoch_log = EpochLog("linear probe", cfg.epochs)
    for epoch in range(cfg.epochs):
        head.train()
        # The loss is summed on the device in float64 (what adding loss.item() to a Python float computes) and read
        # once per epoch: no host-device synchronisation per step.
        total, n = torch.zeros((), dtype=torch.float64, device=dev), 0
        for step, (x, y) in enumerate(batches(epoch)):
            set_lr([opt], lr_at(epoch * steps + step, total_steps, warmup_steps, cfg.lr, cfg.min_lr))
            loss = nn.functional.cross_entropy(head(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.detach(), n + 1
        losses.append(total.item() / max(n, 1))
        epoch_log(epoch, losses[-1])
    return losses


@torch.no_grad()
def evaluate_head(head: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
    """Top-1 / top-5 of ``head`` on features ``x [M, D]`` and labels ``y [M]``."""
    head.eval()
    scores = torch.cat([head(x[i : i + batch_size]) for i in range(0, x.shape[0], batch_size)])
    return topk_accuracy(scores, y)


def _steps(n: int, batch_size: int) -> tuple[int, bool]:
    """(steps per epoch, drop_last): the last short batch is dropped as MAE does, unless it is the only one."""
    return (n // batch_size, True) if n >= batch_size else (1, False)


def linear_probe_cached(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    num_classes: int,
    cfg: LinearProbeConfig | None = None,
    device: str = "cpu",
) -> dict[str, float]:
    """The fast deterministic linear probe on precomputed features.

    Everything stays on ``device``: the features, the labels, each epoch's permutation (drawn on the CPU from the
    seed, so the same on every device) and the mini-batches gathered from it by index; there is no ``DataLoader``
    and the loss is read once per epoch.

    Args:
        train_x: training features ``[N, D]``.
        train_y: their labels ``[N]``.
        val_x: validation features ``[M, D]``.
        val_y: their labels ``[M]``.
        num_classes: number of classes.
        cfg: hyper-parameters (default: MAE's).
        device: where the head trains (the features are moved there).

    Returns:
        ``{"top1", "top5", "train_loss"}`` (accuracies in [0, 1], final epoch's mean loss).
    """
    cfg = cfg or LinearProbeConfig(mode="cached")
    random_seed(cfg.seed)
    dev = torch.device(device)
    head = LinearHead(train_x.shape[1], num_classes).to(dev)
    steps, drop_last = _steps(train_x.shape[0], cfg.batch_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    train_x, train_y = train_x.float().to(dev), train_y.long().to(dev)

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(train_x.shape[0], generator=gen).to(dev)  # drawn on the CPU: the same on any device
        for s in range(steps):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size] if drop_last else order
            yield train_x[idx], train_y[idx]

    losses = train_head(head, batches, steps, cfg)
    return {**evaluate_head(head, val_x.float().to(dev), val_y.to(dev)), "train_loss": losses[-1]}


def linear_probe_mae(
    encoder: nn.Module | None,
    train_ds: Dataset,
    val_x: torch.Tensor,
    val_y: torch.Tensor,
    num_classes: int,
    cfg: LinearProbeConfig | None = None,
    device: str = "cpu",
    num_workers: int = 0,
) -> dict[str, float]:
    """MAE's linear probe: the frozen encoder runs on augmented training images every epoch.

    Args:
        encoder: a timm ``VisionTransformer`` (kept frozen, in eval mode), or ``None`` for raw pixels.
        train_ds: augmented training images ``(image, label)``.
        val_x: validation features ``[M, D]`` of the same pool (eval transform; e.g. from the feature cache).
        val_y: their labels ``[M]``.
        num_classes: number of classes.
        cfg: hyper-parameters (default: MAE's).
        device: where the encoder and head run.
        num_workers: data-loading processes.

    Returns:
        ``{"top1", "top5", "train_loss"}``.
    """
    cfg = cfg or LinearProbeConfig()
    random_seed(cfg.seed)
    dev = torch.device(device)
    if encoder is not None:
        encoder = encoder.to(dev).eval().requires_grad_(False)
    head = LinearHead(val_x.shape[1], num_classes).to(dev)
    steps, drop_last = _steps(len(train_ds), cfg.batch_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    loader = DataLoader(
        train_ds, cfg.batch_size, shuffle=True, drop_last=drop_last, generator=gen, num_workers=num_workers
    )

    def batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in loader:
            with torch.no_grad():
                if encoder is None:
                    feats = x.to(dev).flatten(1)
                else:
                    tokens = encoder.forward_features(x.to(dev))
                    feats = tokens[:, 0] if cfg.pool == "cls" else tokens[:, encoder.num_prefix_tokens :].mean(1)
            yield feats.float(), y.to(dev)

    losses = train_head(head, batches, steps, cfg)
    return {**evaluate_head(head.cpu(), val_x.float(), val_y), "train_loss": losses[-1]}
