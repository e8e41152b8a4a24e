"""The trainer's batches: which images each update reads, and how they reach the device.

One object, :class:`EpochBatches`, puts the three input pipelines behind one loop::

    batches = EpochBatches(data, sampler, device, img_size, in_chans, decode="auto", num_workers=8)
    for epoch in range(epochs):
        for micro, indices in batches.epoch(epoch):        # one update: accum_iter micro-batches
            stats = train_step(model, micro, ...)

* small sets held whole on the device (:class:`~clmae.data.DeviceImages`, e.g. Fashion-MNIST): each
  micro-batch is an index gather plus the augmentation's kernels, no ``DataLoader``;
* image files decoded on the device (``decode="device"``, or ``"auto"`` on CUDA): ``DataLoader`` workers only read the
  encoded bytes and :class:`~clmae.data.transforms.decode.BatchDecoder` decodes and augments each micro-batch;
* image files decoded with PIL in ``DataLoader`` workers (``decode="pil"``, or ``"auto"`` off CUDA).

Whichever it is, :class:`~clmae.data.sampler.GlobalBatchSampler` decides which images each process reads in each update
and the seed of each image's augmentation, so the three serve the same images (up to the resampling's rounding), and
an epoch started at update ``first`` reads exactly what the uninterrupted epoch reads from there on.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from ..data import DeviceImages, GlobalBatchSampler, PretrainingData, build_pretraining_data, item_seed
from ..data.transforms.decode import BatchDecoder, EncodedImages, collate_encoded
from ..models import CLMAE
from .config import TrainConfig
from .distributed import gather_objects
from .signals import ignore_stop_signals, stop_signals_held


def accum_steps(cfg: TrainConfig, world_size: int) -> int:
    """Micro-batches per update: ``cfg.accum_iter``, or derived from ``cfg.global_batch`` and the process count."""
    if cfg.global_batch is None:
        return cfg.accum_iter
    per_update = cfg.batch_size * world_size
    if cfg.global_batch % per_update:
        raise ValueError(
            f"global_batch {cfg.global_batch} is not a multiple of batch_size {cfg.batch_size} x {world_size} "
            "processes; change batch_size or the number of processes"
        )
    return cfg.global_batch // per_update


def model_data(
    spec: str, model: CLMAE, seed: int, skip_unreadable: bool = False, augment: bool | None = None
) -> PretrainingData:
    """The data ``spec`` names, fitted to ``model``: image files are normalised with the model's ``pretrained_cfg``
    mean/std, the preprocessing its exported weights will record."""
    pre = model.encoder.pretrained_cfg
    return build_pretraining_data(
        spec,
        model.in_chans,
        model.img_size,
        seed,
        skip_unreadable=skip_unreadable,
        mean=pre.get("mean"),
        std=pre.get("std"),
        augment=augment,
    )


class EpochBatches:
    """Every update's micro-batches, on ``device``, from the pipeline that fits ``data`` (see the module docstring).

    Args:
        data: the pretraining data (:func:`model_data`); a :class:`~clmae.data.DeviceImages` set is moved to
            ``device``.
        sampler: which images this process reads (its ``batch_size``, ``accum_iter``, epochs).
        device: where the micro-batches are served.
        img_size: side of the served images (the model's input size; used when decoding on the device).
        in_chans: the model's channels (used when decoding on the device).
        decode: image files: ``"pil"`` (in the workers), ``"device"`` (in batches on ``device``) or ``"auto"``
            (``device`` on CUDA, else ``pil``). Device-held sets ignore it.
        num_workers: ``DataLoader`` worker processes for image files.
        augment: MAE's augmentation when decoding on the device.
        with_indices: also serve every micro-batch's image indices (on ``device``), e.g. for a mask probe.
    """

    def __init__(
        self,
        data: PretrainingData,
        sampler: GlobalBatchSampler,
        device: torch.device | str,
        img_size: int,
        in_chans: int,
        *,
        decode: str = "auto",
        num_workers: int = 0,
        augment: bool = True,
        with_indices: bool = False,
    ) -> None:
        self.data, self.sampler, self.device = data, sampler, torch.device(device)
        self.with_indices = with_indices
        self.held = isinstance(data.dataset, DeviceImages)  # small sets: held on the device, no DataLoader
        self.decoder = self.loader = None
        if self.held:
            data.dataset.to(self.device)
            return
        dataset, collate = data.dataset, None
        if decode == "device" or (decode == "auto" and self.device.type == "cuda"):
            dataset, collate = EncodedImages(data.dataset.source), collate_encoded  # the workers only read files
            self.decoder = BatchDecoder(
                img_size, data.mean, data.std, in_chans, augment=augment, device=self.device, names=dataset.name
            )
        self.loader = DataLoader(
            dataset,
            batch_size=sampler.batch_size,
            sampler=sampler,
            num_workers=num_workers,
            pin_memory=self.device.type == "cuda" and self.decoder is None,  # the decoder pins what it copies itself
            persistent_workers=num_workers > 0,
            drop_last=True,
            collate_fn=collate,
            worker_init_fn=ignore_stop_signals if num_workers > 0 else None,  # the main process stops the run
        )

    @property
    def steps_per_epoch(self) -> int:
        """Updates per epoch."""
        return self.sampler.steps_per_epoch

    @property
    def global_batch(self) -> int:
        """Images per update, over all processes."""
        return self.sampler.global_batch

    @property
    def accum(self) -> int:
        """Micro-batches per update."""
        return self.sampler.accum_iter

    def epoch(self, epoch: int, first: int = 0) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor] | list[None]]]:
        """Updates ``first`` .. ``steps_per_epoch - 1`` of ``epoch``, one at a time.

        Args:
            epoch: the epoch (0-based): its data order and augmentation seeds.
            first: updates of the epoch already done (a resumed run): they are skipped without being read.

        Yields:
            ``(micro, indices)``: the update's ``accum`` micro-batches, ``[batch_size, C, H, W]`` float32 normalised on
            the device, and their image indices ``[batch_size]`` int64 on the device (``None`` each, unless the
            data is device-held or ``with_indices``).
        """
        self.sampler.set_epoch(epoch, first)
        # (indices, seeds) of this process's micro-batches, on the device for the whole epoch (no copy per step):
        # the device path reads them; the DataLoader reads the same ones through the sampler; the probe names images.
        plan = [t.to(self.device) for t in self.sampler.plan()] if self.held or self.with_indices else None
        crops = self._crop_plan(plan[1]) if self.held else None  # per epoch
        loaded = None
        if self.loader is not None:
            # the DataLoader draws a seed: keep it off the run's RNG; its workers start with SIGINT/SIGTERM held back
            with torch.random.fork_rng(devices=[]), stop_signals_held():
                loaded = iter(self.loader)
        for s in range(self.steps_per_epoch - first):
            rows = range(s * self.accum, (s + 1) * self.accum)  # this update's rows of the plan
            indices = [plan[0][k] for k in rows] if plan is not None else [None] * self.accum
            if self.held:
                micro = [self.data.dataset.batch(plan[0][k], plan[1][k], self._crop(crops, k)) for k in rows]
            elif self.decoder is not None:
                micro = [self.decoder(*next(loaded)) for _ in rows]
            else:
                micro = [next(loaded).to(self.device, non_blocking=True) for _ in rows]
            yield micro, indices

    def _crop_plan(self, seeds: torch.Tensor) -> tuple[torch.Tensor, ...] | None:
        return self.data.dataset.crop_plan(seeds) if self.data.dataset.augment else None

    def epoch_plan(self, epoch: int, first: int = 0) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
        """Device-held data: what :meth:`epoch` serves from update ``first`` on, as two plans on the device: image
        indices ``[micro-batches, batch_size]`` int64 and the crop boxes and flips of the augmentation
        (:meth:`~clmae.data.DeviceImages.crop_plan`, ``None`` without augmentation); row ``k`` is the
        ``k``-th micro-batch :meth:`epoch` yields."""
        if not self.held:
            raise ValueError("epoch_plan needs a device-held data set (DeviceImages)")
        self.sampler.set_epoch(epoch, first)
        index, seeds = (t.to(self.device) for t in self.sampler.plan())
        return index, self._crop_plan(seeds)

    @staticmethod
    def _crop(crops: tuple[torch.Tensor, ...] | None, k: int) -> list[torch.Tensor] | None:
        return None if crops is None else [c[k] for c in crops]

    def mask_generators(self, epoch: int, step: int) -> list[torch.Generator]:
        """MAE's random masks of update ``step`` of ``epoch``: one generator per micro-batch, seeded by the sampler's
        chunk number (``(step * accum + a) * world_size + rank``), so that the masks do not depend on how the global
        batch is split between processes and accumulation, nor on where a run was resumed."""
        return [torch.Generator(self.device).manual_seed(seed) for seed in self.mask_seeds(epoch, step)]

    def mask_seeds(self, epoch: int, step: int) -> list[int]:
        """The seeds of :meth:`mask_generators`."""
        s = self.sampler
        chunks = [(step * s.accum_iter + a) * s.num_replicas + s.rank for a in range(s.accum_iter)]
        return [item_seed(s.seed, epoch, -1 - c) for c in chunks]


def training_batches(cfg: TrainConfig, model: CLMAE, world_size: int, rank: int, device: torch.device) -> EpochBatches:
    """A run's batches: ``cfg.data`` fitted to ``model`` (:func:`model_data`), this process's share of every global
    batch (:class:`~clmae.data.sampler.GlobalBatchSampler`) and the pipeline ``cfg.decode`` chooses. Under torchrun
    every process calls it (the processes must find data sets of the same size)."""
    data = model_data(cfg.data, model, cfg.seed, skip_unreadable=cfg.skip_unreadable, augment=cfg.augment)
    sizes = gather_objects(len(data.dataset))
    if len(set(sizes)) > 1:
        raise ValueError(f"the processes found data sets of different sizes {sizes} in {cfg.data}; check the files")
    accum = accum_steps(cfg, world_size)
    sampler = GlobalBatchSampler(
        data.dataset, cfg.batch_size, accum, world_size, rank, cfg.seed, epoch_size=cfg.epoch_size
    )
    return EpochBatches(
        data,
        sampler,
        device,
        model.img_size[0],
        model.in_chans,
        decode=cfg.decode,
        num_workers=cfg.num_workers,
        augment=cfg.augment is not False,
        with_indices=cfg.mask_probe > 0,
    )
