"""Data parallelism: ``torchrun`` environment, DDP for the MAE step and one all-reduce for the masking module.

Why not one DDP wrapper around the whole model: the masking-module step (``CLMAE.forward_masker``) switches the
encoder's and decoder's ``requires_grad`` off while it runs, and trains a module that the MAE step (the model's
``forward``) never updates. A single DDP wrapper would need ``find_unused_parameters=True`` (a graph walk every
iteration) and would see two backward passes per forward. Instead:

* the MAE step runs through DDP wrapped around the encoder and decoder only (:func:`wrap_ddp`): its gradients are
  averaged in buckets, overlapped with the backward pass, with ``no_sync`` during gradient accumulation;
* the masking module's gradients are averaged after its backward by one all-reduce of a single flattened buffer
  (:func:`all_reduce_grads`); the module is small next to the encoder (35.6 M of 147.5 M parameters for ViT-B).

Both give the mean of the per-process gradients, so N processes with batch B equal one process that accumulates
the same N micro-batches of B (the masking module's KL and diversity terms are per-micro-batch statistics either way).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .._device import resolve_device
from ..models.pretrainer import CLMAE


@dataclass
class DistInfo:
    """Where this process runs: ``rank`` of ``world_size`` processes, ``local_rank`` on its node, ``device``."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, draws and writes checkpoints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Read ``torchrun``'s environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and join the process group.

    NCCL on CUDA, gloo on CPU. Without ``torchrun`` (no ``WORLD_SIZE``) this is a single process.

    Args:
        device: ``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` (one process only).
    """
    dev = resolve_device(device)
    use_cuda = dev.type == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        if world_size > 1 or dev.index is None:  # under torchrun each process takes its local GPU
            dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, local_rank, world_size, dev)


def cleanup() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class _MAEPart(nn.Module):
    """The encoder and decoder as one module whose ``forward`` is ``CLMAE.forward_mae``.

    The masking module is reachable (``forward_mae`` needs its scores) but deliberately not registered as a
    submodule, so DDP neither broadcasts nor averages it.
    """

    def __init__(self, model: CLMAE) -> None:
        super().__init__()
        self.encoder, self.decoder = model.encoder, model.decoder
        object.__setattr__(self, "_model", model)  # plain attribute: not a registered submodule

    def forward(self, imgs: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self._model.forward_mae(imgs, generator)


def wrap_ddp(model: CLMAE, info: DistInfo) -> DistributedDataParallel | None:
    """DDP over the encoder and decoder (for the MAE step) and rank 0's masking module broadcast to all ranks.

    Returns ``None`` for a single process. Call after loading a checkpoint and moving the model to its device.
    """
    if not info.distributed:
        return None
    if model.masker is not None:
        for tensor in [*model.masker.parameters(), *model.masker.buffers()]:
            dist.broadcast(tensor.data, src=0)
    return DistributedDataParallel(
        _MAEPart(model),
        device_ids=[info.local_rank] if info.device.type == "cuda" else None,
        gradient_as_bucket_view=True,
    )


def all_reduce_grads(module: nn.Module) -> None:
    """Average ``module``'s gradients over all processes with one all-reduce of a flattened buffer."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for g, chunk in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(chunk.view_as(g))


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Mean of ``tensor`` over all processes (a copy; the tensor itself for a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    out = tensor.clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()


def gather_objects(obj: object) -> list[object]:
    """``obj`` of every process, in rank order (``[obj]`` for a single process); every process must call it."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [obj]
    out: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out
