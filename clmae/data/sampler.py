"""Data order and augmentation randomness that depend only on the seed, the epoch and the position in the epoch.

:class:`GlobalBatchSampler` is a ``DistributedSampler`` whose result does not depend on how the global batch is
split: every epoch draws one permutation of the data set (seed + epoch, as ``DistributedSampler``), cuts it into
micro-batch chunks of ``batch_size``, and hands chunk ``c = (step * accum_iter + a) * world_size + rank`` to micro-
batch ``a`` of process ``rank``. One GPU with ``accum_iter = 8`` sees the same chunks in each update as 8 GPUs with
``accum_iter = 1``, so a run can move between machines and give the same result up to floating-point rounding.
The incomplete last global batch of each epoch is dropped (as MAE's ``drop_last``). With ``epoch_size`` an epoch
reads only the first ``epoch_size`` images of its permutation (for data sets too large to pass over), and
:meth:`GlobalBatchSampler.set_epoch` can start an epoch at any update, so a run resumed inside an epoch reads exactly
the images it had not read yet.

It yields ``(index, seed)`` pairs: :class:`SeededDataset` applies its random transform under that seed, so
augmentations do not depend on worker processes or on where a run was resumed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler


def item_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for one sample (or micro-batch) from the run's seed, the epoch and a position in the epoch."""
    return ((seed * 1_000_003 + epoch) * 1_000_003 + position) % (1 << 63)


def item_seeds(seed: int, epoch: int, positions: torch.Tensor) -> torch.Tensor:
    """:func:`item_seed` of many positions at once: ``[N]`` int64 positions -> ``[N]`` int64 seeds."""
    base = np.uint64(item_seed(seed, epoch, 0))
    pos = positions.cpu().numpy().astype(np.uint64)
    return torch.from_numpy(((pos + base) & np.uint64((1 << 63) - 1)).astype(np.int64))  # uint64 wraps: mod 2^63


class GlobalBatchSampler(DistributedSampler):
    """Split-invariant distributed sampler; yields ``(index, seed)`` pairs for :class:`SeededDataset`.

    Args:
        dataset: the data set (only its length is used).
        batch_size: images per process per micro-batch.
        accum_iter: micro-batches per update.
        num_replicas: number of processes (default: the process group's size, else 1).
        rank: this process (default: its rank in the process group, else 0).
        seed: run seed; the permutation of epoch e uses ``seed + e``.
        shuffle: draw a new permutation every epoch (else data set order).
        epoch_size: images per epoch (default: the whole data set).
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        accum_iter: int = 1,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        epoch_size: int | None = None,
    ) -> None:
        if num_replicas is None:
            dist = torch.distributed
            num_replicas = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
            rank = dist.get_rank() if num_replicas > 1 else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank or 0, shuffle=shuffle, seed=seed)
        self.batch_size, self.accum_iter = batch_size, accum_iter
        self.global_batch = batch_size * accum_iter * self.num_replicas
        size = len(dataset) if epoch_size is None else min(epoch_size, len(dataset))
        self.steps_per_epoch = size // self.global_batch
        if self.steps_per_epoch == 0:
            what = f"the data set has {len(dataset)} images" if size == len(dataset) else f"epoch_size is {size}"
            raise ValueError(
                f"{what}, fewer than one global batch of {self.global_batch} (batch_size {batch_size} x accum_iter "
                f"{accum_iter} x {self.num_replicas} processes); lower batch_size or use more data"
            )
        self.num_samples = self.steps_per_epoch * accum_iter * batch_size
        self.total_size = self.num_samples * self.num_replicas
        self.start_step = 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch's permutation; the next iteration begins at update ``start_step`` of that epoch."""
        if not 0 <= start_step <= self.steps_per_epoch:
            raise ValueError(f"start_step must be in [0, {self.steps_per_epoch}], got {start_step}")
        super().set_epoch(epoch)
        self.start_step = start_step

    def __iter__(self) -> Iterator[tuple[int, int]]:
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()
        else:
            order = list(range(n))
        b, w = self.batch_size, self.num_replicas
        for k in range(self.start_step * self.accum_iter, self.steps_per_epoch * self.accum_iter):
            start = (k * w + self.rank) * b
            for pos in range(start, start + b):
                yield order[pos], item_seed(self.seed, self.epoch, pos)

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accum_iter * self.batch_size

    def plan(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's rest of the epoch in two tensors: ``(indices, seeds)``, each ``[micro-batches, batch_size]``
        int64, row ``k`` the ``k``-th micro-batch iteration yields. Moved to the GPU once per epoch, they let a
        training loop read its batches without a host-to-device copy per step."""
        n, b, w = len(self.dataset), self.batch_size, self.num_replicas
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(n)
        chunks = torch.arange(self.start_step * self.accum_iter, self.steps_per_epoch * self.accum_iter)
        positions = ((chunks * w + self.rank) * b).unsqueeze(1) + torch.arange(b)  # [micro-batches, b]
        seeds = item_seeds(self.seed, self.epoch, positions.flatten()).view_as(positions)
        return order[positions], seeds


class SeededDataset(Dataset):
    """Applies ``transform`` to ``source[index]`` under a per-sample seed; indexed by ``(index, seed)`` pairs.

    The transform's random draws (torchvision transforms use torch's global generator) come from the given seed,
    inside ``torch.random.fork_rng`` so that nothing else's randomness changes.

    Args:
        source: a data set whose items are images (a PIL image or a tensor).
        transform: optional random transform to a ``[C, H, W]`` tensor.
    """

    def __init__(self, source: Any, transform: Callable[[Any], torch.Tensor] | None = None) -> None:
        self.source, self.transform = source, transform

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, key: int | tuple[int, int]) -> torch.Tensor:
        index, seed = key if isinstance(key, tuple) else (key, 0)
        image = self.source[index]
        if self.transform is None:
            return image
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.transform(image)
