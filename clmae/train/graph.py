"""One training update on device-held data with every input in tensors allocated once: a CUDA graph can replay it.

A small ViT on a GPU waits on Python and kernel launches, not on arithmetic. With the data set held on the device
(:class:`~clmae.data.DeviceImages`) nothing in an update needs the host, so the whole update -- the batch's
gather and augmentation, both CL-MAE steps and both AdamW steps -- can be captured once as a CUDA graph and replayed
every step (``cuda_graph=true``). What changes from update to update lives in tensors the graph reads:

* the epoch's plan (image indices and crop boxes of every micro-batch), written once per epoch, and ``row``, the
  first plan row of the update;
* ``lam``, the curriculum factor, written once per epoch; ``lr``, the learning rate, written before each update and
  read by the optimizers (AdamW with a tensor learning rate; capturable and fused on CUDA);
* MAE's random masks: one generator per micro-batch, re-seeded before each update with the seeds the eager loop uses
  (a graph reads a registered generator's seed when it is replayed).

Off CUDA (and when capture fails) the same update runs eagerly: on a CPU it gives :func:`~clmae.train.step.train_step`'s
weights and losses bit for bit, which is what the tests check.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch

from ..data import DeviceImages
from ..models import CLMAE
from .batches import EpochBatches
from .config import TrainConfig
from .step import train_step

WARMUP_UPDATES = 3  # eager updates on a side stream before the capture (lazy state, cuDNN/cuBLAS choices)


def _plain_groups(optimizer: torch.optim.Optimizer, state: dict) -> dict:
    """A state dict as an eager optimizer writes it: a float learning rate, not capturable (state-dict post-hook)."""
    for group in state["param_groups"]:
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = group["lr"].item()
        group["capturable"] = False
    return state


def use_tensor_lr(optimizers: Sequence[torch.optim.Optimizer | None], lr: torch.Tensor, capturable: bool) -> None:
    """Make ``optimizers`` read their learning rate from ``lr`` (a 0-dim tensor written in place), capturable on CUDA.

    Call after their state is restored (``load_state_dict`` replaces the groups). Their checkpoints stay those of
    eager optimizers (float learning rate, not capturable), so either path can resume from them.

    Raises:
        RuntimeError: this PyTorch has no optimizer state-dict hooks (PyTorch < 2.2); train eagerly.
    """
    for opt in optimizers:
        if opt is None:
            continue
        if not hasattr(opt, "register_state_dict_post_hook"):
            raise RuntimeError(f"PyTorch {torch.__version__} has no optimizer state-dict hooks (needs >= 2.2)")
        for group in [*opt.param_groups, opt.defaults]:
            group["lr"] = lr
            group["capturable"] = capturable
        opt.register_state_dict_post_hook(_plain_groups)


class StaticUpdate:
    """The update of :func:`~clmae.train.step.train_step` on device-held data, reading only tensors allocated once.

    Per epoch call :meth:`epoch`, per update :meth:`__call__`. On CUDA with ``graph=True`` the first
    ``WARMUP_UPDATES`` updates run eagerly on a side stream, the next is captured and every update from then on is a
    replay; if the capture fails, one line says so (``log``) and the updates stay eager.

    Args:
        model: the pretraining model, on the images' device, in train mode.
        optimizers: ``(mae_optimizer, masker_optimizer)`` of :func:`~clmae.train.step.build_optimizers`, state already
            restored; their learning rate becomes this object's ``lr`` tensor.
        images: the device-held training images.
        batch_size: images per micro-batch.
        accum: micro-batches per update.
        rows: micro-batches per epoch (the plan's size: updates per epoch x ``accum``).
        amp: bf16 autocast on CUDA.
        graph: capture and replay on CUDA (ignored elsewhere).
        log: where the one line about a failed capture goes.
    """

    def __init__(
        self,
        model: CLMAE,
        optimizers: Sequence[torch.optim.Optimizer | None],
        images: DeviceImages,
        batch_size: int,
        accum: int,
        rows: int,
        *,
        amp: bool = True,
        graph: bool = True,
        log: Callable[[str], None] = print,
    ) -> None:
        device = images.device
        self.model, self.optimizers, self.images, self.accum = model, tuple(optimizers), images, accum
        self.amp, self.log = amp, log
        self.cuda = device.type == "cuda"
        self.graph_wanted, self.graph, self.outputs, self.calls = graph and self.cuda, None, None, 0
        self.index = torch.zeros(rows, batch_size, dtype=torch.int64, device=device)
        # crop boxes (top, left, h, w) and flips of every micro-batch of the epoch (DeviceImages.crop_plan)
        self.crops = None
        if images.augment:
            boxes = [torch.zeros(rows, batch_size, dtype=torch.int64, device=device) for _ in range(4)]
            self.crops = (*boxes, torch.zeros(rows, batch_size, dtype=torch.bool, device=device))
        self.row = torch.zeros((), dtype=torch.int64, device=device)
        self.offsets = torch.arange(accum, device=device)
        self.lam = torch.zeros((), dtype=torch.float32, device=device)
        # Fused AdamW reads a float32 learning rate; elsewhere float64 keeps the eager optimizer's double bit for bit.
        self.lr = torch.zeros((), dtype=torch.float32 if self.cuda else torch.float64, device=device)
        self.generators = None if model.masker is not None else [torch.Generator(device) for _ in range(accum)]
        use_tensor_lr(self.optimizers, self.lr, capturable=self.cuda)

    def epoch(
        self, plan: tuple[torch.Tensor, tuple[torch.Tensor, ...] | None], lam: float
    ) -> Iterator[tuple[None, list[torch.Tensor]]]:
        """Load an epoch's ``plan`` (``(indices, crops)``, rows from the first update still to do, as
        :meth:`~clmae.train.batches.EpochBatches.epoch_plan` gives) and the curriculum factor ``lam``; then, per
        update, point ``row`` at it and yield ``(None, indices)`` as :meth:`~clmae.train.batches.EpochBatches.epoch`
        yields ``(micro, indices)``: no micro-batches (the update gathers its own), and its micro-batches' image
        indices (views of the plan, ``[batch_size]`` each, valid until the next epoch)."""
        index, crops = plan
        n = index.shape[0]
        if n > self.index.shape[0] or n % self.accum:
            raise ValueError(f"a plan of {n} micro-batches does not fit {self.index.shape[0]} rows of {self.accum}")
        self.index[:n].copy_(index)
        if self.crops is not None:
            for buffer, values in zip(self.crops, crops):
                buffer[:n].copy_(values)
        self.lam.fill_(lam)
        for first in range(0, n, self.accum):
            self.row.fill_(first)
            yield None, [self.index[first + a] for a in range(self.accum)]

    def __call__(self, lr: float, mask_seeds: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
        """One update at learning rate ``lr`` (MAE: its micro-batches' mask seeds); returns
        :func:`~clmae.train.step.train_step`'s statistics with ``return_masks`` (under a graph, the same tensors
        every update, overwritten by the next one)."""
        self.lr.fill_(lr)
        if self.generators is not None:
            if mask_seeds is None or len(mask_seeds) != self.accum:
                raise ValueError(f"method 'mae' needs {self.accum} mask seeds per update, got {mask_seeds!r}")
            for g, s in zip(self.generators, mask_seeds):
                g.manual_seed(s)
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
            return self.outputs
        if not self.graph_wanted:
            return self.update()
        if self.calls <= WARMUP_UPDATES:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                stats = self.update()
            torch.cuda.current_stream().wait_stream(side)
            return stats
        try:
            self.capture()
        except Exception as e:  # any capture failure: say so once, keep training eagerly
            first = (str(e).strip().splitlines() or [""])[0][:200]
            self.log(f"cuda_graph: capturing the update failed ({type(e).__name__}: {first}); continuing eagerly")
            self.graph_wanted, self.graph = False, None
            return self.update()
        self.graph.replay()
        return self.outputs

    def capture(self) -> None:
        """Record one update as a CUDA graph (nothing runs: :meth:`__call__` replays it)."""
        for opt in self.optimizers:
            if opt is not None:
                opt.zero_grad(set_to_none=True)  # the graph's backward allocates the gradients in its own pool
        graph = torch.cuda.CUDAGraph()
        for g in self.generators or ():
            graph.register_generator_state(g)  # the replay reads the seed each update sets
        with torch.cuda.graph(graph):
            self.outputs = self.update()
        self.graph = graph

    def update(self) -> dict[str, torch.Tensor]:
        """The update itself, eagerly: this update's micro-batches gathered (and augmented) from the plan, then
        :func:`~clmae.train.step.train_step`."""
        rows = self.row + self.offsets  # [accum]: no host value, so a graph replays it for any row
        index = self.index.index_select(0, rows)
        crops = None if self.crops is None else [c.index_select(0, rows) for c in self.crops]
        micro = [
            self.images.batch(index[a], crops=None if crops is None else [c[a] for c in crops])
            for a in range(self.accum)
        ]
        return train_step(
            self.model,
            micro,
            self.lam,
            *self.optimizers,
            amp=self.amp,
            generator=self.generators,
            return_masks=True,
        )

    @property
    def graphed(self) -> bool:
        """Whether updates are replays of a captured graph now."""
        return self.graph is not None


def static_update(
    cfg: TrainConfig,
    distributed: bool,
    model: CLMAE,
    optimizers: Sequence[torch.optim.Optimizer | None],
    batches: EpochBatches,
    log: Callable[[str], None] = print,
) -> StaticUpdate | None:
    """The trainer's :class:`StaticUpdate` for ``cuda_graph=true``, or ``None`` (one line in ``log`` says why) where
    it does not apply: data not held on the device, several processes, ``compile=true``, or an old PyTorch."""
    why = None
    if not batches.held:
        why = "the data is not held on the device (small sets such as fmnist are)"
    elif distributed:
        why = "it drives one process (torchrun runs several)"
    elif cfg.compile:
        why = "compile=true already rewrites the update"
    if why is None:
        try:
            return StaticUpdate(
                model,
                optimizers,
                batches.data.dataset,
                batches.sampler.batch_size,
                batches.accum,
                batches.steps_per_epoch * batches.accum,
                amp=cfg.amp,
                log=log,
            )
        except RuntimeError as e:
            why = str(e)
    log(f"cuda_graph: not used, {why}; training eagerly")
    return None
