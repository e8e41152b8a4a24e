"""Small image sets held whole on the training device: each batch is gathered by index and augmented there
(:class:`DeviceImages` for pretraining, :class:`TensorSplit` for fine-tuning and its evaluation).

Fashion-MNIST's 60,000 training images are 47 MB as uint8: on a GPU, a batch is one index gather and a few
batched kernels, where a ``DataLoader`` would spend a Python call (and, with augmentation, a PIL image) per
sample and still copy every batch to the device. Small models train faster than worker processes can feed them.

The batches are the same as the ``DataLoader`` path's: :class:`~clmae.data.sampler.GlobalBatchSampler` decides
which images each process reads at each step, and the augmentation of each image is drawn from its own seed
(:mod:`clmae.data.transforms.augment`), so runs resume exactly and do not depend on the number of processes.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from .augment import crop_params, resized_crop
from .augment_finetune import DeviceTrainAugment
from .identity import identity_at_model_size, normalize_uint8
from .numbers import normalize


class DeviceImages(Dataset):
    """Images ``[N, C, H, W]`` in one tensor (uint8, or float already in model units), served normalised.

    Args:
        images: the whole set; uint8 pixels are divided by 255 before normalisation, float ones are used as they
            are.
        mean: per-channel normalisation mean (one value per channel, or one for all).
        std: per-channel normalisation std.
        size: side of the served images (the model's input size).
        augment: MAE's RandomResizedCrop(scale 0.2-1, ratio 3/4-4/3, bicubic) + horizontal flip, per sample;
            without it the images are served as they are (they must already be ``size`` x ``size``).
    """

    def __init__(
        self,
        images: torch.Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        size: int,
        augment: bool = False,
    ) -> None:
        if images.ndim != 4:
            raise ValueError(f"images must be [N, C, H, W], got shape {tuple(images.shape)}")
        if not augment and tuple(images.shape[2:]) != (size, size):
            raise ValueError(f"images of {tuple(images.shape[2:])} px need augment=True to be served at {size} px")
        self.images, self.size, self.augment = images, size, augment
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)

    @property
    def device(self) -> torch.device:
        """Where the images are."""
        return self.images.device

    def to(self, device: torch.device | str) -> DeviceImages:
        """Move the images to ``device`` (in place); returns ``self``."""
        self.images = self.images.to(device)
        return self

    def __len__(self) -> int:
        return self.images.shape[0]

    def crop_plan(self, seeds: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The crop boxes and flips (:func:`~.augment.crop_params`) of many seeds at once, in the shape of
        ``seeds``: for a whole epoch's plan, one set of kernels per epoch instead of one per batch. Row ``k`` of each
        is what :meth:`batch` draws from ``seeds[k]``."""
        params = crop_params(seeds.reshape(-1).to(self.device), self.images.shape[2], self.images.shape[3])
        return tuple(p.view(seeds.shape) for p in params)

    def batch(
        self, index: torch.Tensor, seeds: torch.Tensor | None = None, crops: tuple[torch.Tensor, ...] | None = None
    ) -> torch.Tensor:
        """Images ``index`` (``[B]`` int64), augmented with per-sample ``seeds`` (``[B]`` int64), or with their crop
        boxes already drawn (``crops``, a row of :meth:`crop_plan`), normalised: ``[B, C, size, size]`` float32 on
        the images' device."""
        x = self.images[index.to(self.device)]
        if self.augment:
            if crops is None:
                if seeds is None:
                    raise ValueError("augmented batches need one seed per image")
                crops = self.crop_plan(seeds)
            x = resized_crop(x, *crops, self.size)  # uint8 in: [0, 1] out
        # uint8 unaugmented: the arithmetic of clmae.data.to_float, so results match it bit for bit
        return normalize(x, self.mean, self.std)

    def __getitem__(self, key: int | tuple[int, int]) -> torch.Tensor:
        """One image: ``[C, size, size]``; ``key`` is an index or an ``(index, seed)`` pair (as the sampler yields)."""
        index, seed = key if isinstance(key, tuple) else (key, 0)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        return self.batch(torch.tensor([index]), torch.tensor([seed], dtype=torch.int64))[0]

    def without_augmentation(self) -> DeviceImages:
        """The same images (shared, not copied), unaugmented: for pictures. Needs images of ``size``."""
        return DeviceImages(self.images, self.mean, self.std, self.size, augment=False)


class TensorSplit(Dataset):
    """One split held as tensors -- uint8 images ``[N, H, W]`` at the model's size and labels ``[N]`` -- served a
    batch at a time on their device: through ``augment`` (training), or as the evaluation transform gives them
    (``augment=None``: ``pixel / 255``, normalised). :func:`clmae.eval.finetune.finetune` trains on it with no
    ``DataLoader``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        cfg: dict,
        augment: DeviceTrainAugment | None = None,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 3 or not identity_at_model_size(cfg, images.shape[1:]):
            raise ValueError(
                f"TensorSplit takes uint8 images [N, H, W] at the model's size, got {images.dtype} "
                f"{tuple(images.shape)} for input_size {cfg['input_size']}"
            )
        if labels.shape != images.shape[:1]:
            raise ValueError(f"need one label per image: {images.shape[0]} images, labels {tuple(labels.shape)}")
        self.images, self.labels, self.cfg, self.augment = images, labels.long(), cfg, augment

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> TensorSplit:
        """Move images and labels to ``device`` (in place); returns ``self``."""
        self.images, self.labels = self.images.to(device), self.labels.to(device)
        return self

    def batch(self, index: torch.Tensor, seeds: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``index`` (model input, on the images' device) and their labels; ``seeds`` (``[B]`` int64, one
        per image) when augmenting."""
        index = index.to(self.images.device)
        if self.augment is None:
            return normalize_uint8(self.images[index], self.cfg), self.labels[index]
        if seeds is None:
            raise ValueError("augmented batches need one seed per image")
        return self.augment(self.images[index], seeds), self.labels[index]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x, y = self.batch(torch.tensor([i]), torch.tensor([i], dtype=torch.int64))
        return x[0], int(y[0])
