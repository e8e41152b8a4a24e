"""Fine-tuning as MAE: global-average pooling with a fresh ``fc_norm``, layer-wise LR decay, drop-path, label
smoothing, RandAugment, random erasing and mixup/cutmix (MAE's ``main_finetune.py``, with timm's building blocks).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.data import Mixup
from timm.layers import trunc_normal_
from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
from timm.utils import random_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .._compat import param_groups_layer_decay
from .._options import attributes_doc, check_fields, option
from .._progress import EpochLog, progress
from ..data.sampler import item_seeds
from ..data.transforms.device import TensorSplit
from ..train.schedule import check_schedule, lr_at, peak_lr
from ..train.step import autocast_for
from .knn import topk_accuracy
from .model import ResolvedModel


@dataclass
class FinetuneConfig:
    """Hyper-parameters of fine-tuning (defaults: MAE's ViT-L recipe; for ViT-B MAE uses 100 epochs, base_lr 5e-4
    and layer_decay 0.65)."""

    epochs: int = option(50, "training epochs (MAE: 100 for ViT-B, 50 for ViT-L).")
    warmup_epochs: int = option(5, "linear warm-up epochs (MAE: 5).")
    batch_size: int = option(
        64,
        "images per step; the rate is ``base_lr * batch_size / 256``.",
        at_least=2,
        multiple_of=2,
        why="mixup pairs images",
    )
    base_lr: float = option(1e-3, "rate at batch 256 (MAE: 5e-4 for ViT-B, 1e-3 for ViT-L).")
    min_lr: float = option(1e-6, "rate at the end of the cosine (MAE: 1e-6).")
    weight_decay: float = option(
        0.05, "AdamW weight decay on weights (MAE: 0.05); none on biases, norms, tokens and positions."
    )
    layer_decay: float = option(0.75, "layer-wise rate decay (MAE: 0.65 ViT-B, 0.75 ViT-L).", above=0, at_most=1)
    drop_path: float = option(0.1, "stochastic depth rate (MAE: 0.1).")
    smoothing: float = option(0.1, "label smoothing (MAE: 0.1).")
    mixup: float = option(0.8, "mixup alpha (MAE: 0.8); 0 turns it off.")
    cutmix: float = option(1.0, "cutmix alpha (MAE: 1.0); 0 turns it off.")
    auto_augment: str = option(
        "rand-m9-mstd0.5-inc1", 'timm RandAugment spec (MAE: ``rand-m9-mstd0.5-inc1``); ``"none"`` turns it off.'
    )
    reprob: float = option(0.25, "random-erasing probability (MAE: 0.25).")
    crop_min: float = option(0.08, "smallest RandomResizedCrop area fraction (timm: 0.08).", above=0, at_most=1)
    hflip: float = option(0.5, "horizontal-flip probability (0.5).")
    clip_grad: float = option(0.0, "gradient-norm clip, 0 for none.")
    seed: int = option(0, "seeds the head, the shuffling and the augmentation.")

    def __post_init__(self) -> None:
        check_schedule(self.epochs, self.warmup_epochs)
        check_fields(self)

    @property
    def lr(self) -> float:
        """Peak rate: ``base_lr * batch_size / 256``."""
        return peak_lr(self.base_lr, self.batch_size)


FinetuneConfig.__doc__ = attributes_doc(FinetuneConfig)


def build_classifier(model: ResolvedModel, num_classes: int, drop_path: float) -> nn.Module:
    """The encoder with global-average pooling, a fresh ``fc_norm`` and a fresh head (MAE's fine-tuning model).

    The encoder's final ``norm`` is dropped, as MAE does with ``global_pool=True``; the head's weight is
    trunc-normal with std 2e-5 (MAE).
    """
    net = model.build(global_pool="avg", fc_norm=True, num_classes=num_classes, drop_path_rate=drop_path)
    state = {k: v for k, v in model.state_dict.items() if not k.startswith(("norm.", "head.", "fc_norm."))}
    model.load_into(net, state, optional=("fc_norm.", "head."))
    trunc_normal_(net.head.weight, std=2e-5)
    nn.init.zeros_(net.head.bias)
    return net


@torch.no_grad()
def evaluate(net: nn.Module, ds: Dataset, batch_size: int, device: torch.device) -> dict[str, float]:
    """Top-1 / top-5 of ``net`` on ``ds``."""
    net.eval()
    if isinstance(ds, TensorSplit):  # on the device, no DataLoader; scores stay there
        ds.to(device)
        scores = []
        for start in range(0, len(ds), batch_size):
            x, _ = ds.batch(torch.arange(start, min(start + batch_size, len(ds)), device=device))
            scores.append(net(x).float())
        return topk_accuracy(torch.cat(scores), ds.labels)
    scores, labels = [], []
    for x, y in DataLoader(ds, batch_size=batch_size):
        scores.append(net(x.to(device)).float().cpu())
        labels.append(y)
    return topk_accuracy(torch.cat(scores), torch.cat(labels))


def finetune(
    model: ResolvedModel,
    train_ds: Dataset,
    val_ds: Dataset,
    num_classes: int,
    cfg: FinetuneConfig | None = None,
    device: str = "cpu",
    num_workers: int = 0,
) -> dict[str, float]:
    """Fine-tune the whole encoder and report validation accuracy after the last epoch.

    Two data paths, the same recipe: a PIL dataset goes through a ``DataLoader`` (``num_workers``); a
    :class:`~clmae.data.transforms.device.TensorSplit` (Fashion-MNIST, see :func:`clmae.eval.run.run_eval`) stays on
    ``device`` and each step gathers its batch by index and augments it there
    (:class:`~clmae.data.transforms.augment_finetune.DeviceTrainAugment`, one seed per image from
    :func:`clmae.data.sampler.item_seeds`); its order is one ``randperm`` of the seeded generator per epoch. Either
    way the loss is read once per epoch.

    Args:
        model: the resolved ``--model`` (not raw pixels).
        train_ds: augmented training images (see :func:`clmae.data.transforms.pil.train_transform`), or a
            :class:`TensorSplit` with a ``DeviceTrainAugment``.
        val_ds: validation images with the evaluation transform (a :class:`TensorSplit` without augmentation).
        num_classes: number of classes.
        cfg: hyper-parameters.
        device: where to train; bf16 autocast on CUDA.
        num_workers: data-loading processes.

    Returns:
        ``{"top1", "top5", "train_loss"}``.
    """
    cfg = cfg or FinetuneConfig()
    if model.is_raw:
        raise ValueError("fine-tuning needs an encoder; raw-pixels has none (use the knn or linear protocol)")
    random_seed(cfg.seed)  # Python's, NumPy's and torch's: timm's Mixup and RandAugment draw from the first two
    dev = torch.device(device)
    net = build_classifier(model, num_classes, cfg.drop_path).to(dev)
    groups = param_groups_layer_decay(
        net, weight_decay=cfg.weight_decay, no_weight_decay_list=net.no_weight_decay(), layer_decay=cfg.layer_decay
    )
    opt = torch.optim.AdamW(groups, lr=cfg.lr)
    mixup = None
    if cfg.mixup > 0 or cfg.cutmix > 0:
        mixup = Mixup(
            mixup_alpha=cfg.mixup, cutmix_alpha=cfg.cutmix, label_smoothing=cfg.smoothing, num_classes=num_classes
        )
        criterion: nn.Module = SoftTargetCrossEntropy()
    elif cfg.smoothing > 0:
        criterion = LabelSmoothingCrossEntropy(cfg.smoothing)
    else:
        criterion = nn.CrossEntropyLoss()
    drop_last = len(train_ds) >= cfg.batch_size
    gen = torch.Generator().manual_seed(cfg.seed)
    if len(train_ds) == 0:
        raise ValueError("the training set is empty")
    on_device = isinstance(train_ds, TensorSplit) and train_ds.augment is not None
    if on_device:
        train_ds.to(dev)
        steps = len(train_ds) // cfg.batch_size if drop_last else 1

        def epoch_batches(epoch: int):
            n = len(train_ds)
            order = torch.randperm(n, generator=gen).to(dev)  # drawn on the CPU: the same on any device
            seeds = item_seeds(cfg.seed, epoch, torch.arange(n)).to(dev)  # per image, not per position
            for s in range(steps):
                idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size]
                yield train_ds.batch(idx, seeds[idx])

    else:
        loader = DataLoader(
            train_ds, cfg.batch_size, shuffle=True, drop_last=drop_last, generator=gen, num_workers=num_workers
        )
        steps = len(loader)

        def epoch_batches(epoch: int):
            return iter(loader)

    loss_value = float("nan")
    epoch_log = EpochLog("fine-tune", cfg.epochs)
    for epoch in range(cfg.epochs):
        net.train()
        total, n = torch.zeros((), dtype=torch.float64, device=dev), 0
        batches = progress(epoch_batches(epoch), f"fine-tune epoch {epoch + 1}/{cfg.epochs}", steps, leave=False)
        for step, (x, y) in enumerate(batches):
            lr = lr_at(epoch * steps + step, cfg.epochs * steps, cfg.warmup_epochs * steps, cfg.lr, cfg.min_lr)
            for group in opt.param_groups:  # layer-wise decay: timm's groups carry their scale (MAE's lr_sched)
                group["lr"] = lr * group["lr_scale"]
            x, y = x.to(dev), y.to(dev)
            if mixup is not None:
                if x.shape[0] % 2:  # timm's Mixup pairs images: drop one from an odd final batch
                    x, y = x[:-1], y[:-1]
                x, y = mixup(x, y)
            with autocast_for(dev):
                loss = criterion(net(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip_grad > 0:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad)
            opt.step()
            total, n = total + loss.detach(), n + 1  # read once per epoch: no synchronisation per step
        loss_value = total.item() / max(n, 1)
        epoch_log(epoch, loss_value)
    return {**evaluate(net, val_ds, cfg.batch_size, dev), "train_loss": loss_value}
