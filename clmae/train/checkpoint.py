"""Training checkpoints: one flat dict per file, written atomically, read with ``torch.load(weights_only=True)``.

A checkpoint ``OUT/checkpoint-EEEE.pt`` (EEEE = epochs completed) holds::

    model             state dict of the whole pretraining model (encoder, decoder, masking module)
    mae_optimizer     AdamW state of the encoder + decoder
    masker_optimizer  AdamW state of the masking module (None for MAE)
    epoch             epochs completed (the next epoch to run)
    step              optimizer updates completed (the schedule's position)
    global_batch      images per update (a resume must keep it)
    config            the TrainConfig as a plain dict
    rng_ranks         every process's random states (torch, cuda, numpy, python), in rank order: each process
                      restores its own when the process count matches, else rank 0's carry over
    metrics           the per-epoch records so far (lambda_cl, losses; for plots)

The data order, the augmentations and MAE's random masks are functions of (seed, epoch, position), so resuming at
an epoch boundary continues exactly as an uninterrupted run.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._io import load_torch_checkpoint
from .config import TrainConfig

_NAME = re.compile(r"^checkpoint-(\d+)\.pt$")
# Fields that may change when a run is resumed; any other difference is an error.
# batch_size/accum_iter/global_batch may change with the number of processes as long as the global batch stays.
RESUMABLE_CHANGES = {
    "recipe",
    "data",
    "num_workers",
    "device",
    "compile",
    "out",
    "save_every",
    "save_every_steps",
    "keep_checkpoints",
    "log_every",
    "vis_every",
    "vis_images",
    "export",
    "progress",
    "batch_size",
    "accum_iter",
    "global_batch",
}


def checkpoint_path(out: str | os.PathLike, epoch: int) -> Path:
    """``OUT/checkpoint-EEEE.pt`` for ``epoch`` epochs completed."""
    return Path(out) / f"checkpoint-{epoch:04d}.pt"


def list_checkpoints(out: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``out``, oldest first (temporary files of an interrupted write are ignored)."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def rng_state() -> dict[str, Any]:
    """This process's random states as tensors and lists (safe for ``weights_only`` loading)."""
    np_state = np.random.get_state()  # noqa: NPY002 (the global state is what third-party code uses)
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` atomically: to a temporary file in the same folder, flushed, then renamed over ``path``.

    A crash at any moment leaves either the previous file or the complete new one, never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code is unpickled)."""
    state = load_torch_checkpoint(path, map_location)  # clear errors for missing, truncated or foreign files
    if "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a clmae training checkpoint (no 'model' and 'config' entries)")
    return state


def find_resume(resume: str | None, out: str | os.PathLike) -> Path | None:
    """The checkpoint to resume from: ``None``/``""`` (start fresh, refused if ``out`` holds checkpoints), ``auto``
    (the newest in ``out``, if any) or a path."""
    if not resume:
        if list_checkpoints(out):
            raise ValueError(
                f"{out} already holds checkpoints of a run; pass --resume auto to continue it, or choose another --out"
            )
        return None
    if resume == "auto":
        found = list_checkpoints(out)
        return found[-1] if found else None
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint; use --resume auto or a checkpoint-*.pt path")
    return path


def prune_checkpoints(out: str | os.PathLike, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (``keep=0`` keeps all), and temporary files left by a process
    killed while writing."""
    for stale in Path(out).glob(".checkpoint-*.pt.tmp*"):
        if not stale.name.endswith(f".tmp{os.getpid()}"):
            stale.unlink(missing_ok=True)
    if keep > 0:
        for old in list_checkpoints(out)[:-keep]:
            old.unlink(missing_ok=True)


def training_state(
    model: nn.Module,
    mae_optimizer: torch.optim.Optimizer,
    masker_optimizer: torch.optim.Optimizer | None,
    epoch: int,
    step: int,
    global_batch: int,
    config: TrainConfig,
    rng_ranks: list[dict[str, Any]],
    metrics: list[dict[str, Any]],
) -> dict[str, Any]:
    """The checkpoint dict (see the module docstring)."""
    return {
        "model": model.state_dict(),
        "mae_optimizer": mae_optimizer.state_dict(),
        "masker_optimizer": None if masker_optimizer is None else masker_optimizer.state_dict(),
        "epoch": epoch,
        "step": step,
        "global_batch": global_batch,
        "config": config.to_dict(),
        "rng_ranks": rng_ranks,
        "metrics": metrics,
    }


def restore(
    path: str | os.PathLike,
    model: nn.Module,
    mae_optimizer: torch.optim.Optimizer,
    masker_optimizer: torch.optim.Optimizer | None,
    config: TrainConfig,
    global_batch: int,
    rank: int = 0,
    world_size: int = 1,
) -> tuple[int, int, list[dict[str, Any]]]:
    """Continue a run from a checkpoint: model, optimizers and this process's random states, after checking that
    ``config`` may resume it.

    Returns:
        ``(epochs done, updates done, per-epoch records so far)``.

    Raises:
        ValueError: the config or the global batch differs from the checkpoint's in a way that changes the run.
    """
    device = next(model.parameters()).device
    state = load_checkpoint(path, map_location=device)
    _check_resumable(state["config"], config, global_batch, state["global_batch"])
    model.load_state_dict(state["model"])
    mae_optimizer.load_state_dict(state["mae_optimizer"])
    if masker_optimizer is not None:
        masker_optimizer.load_state_dict(state["masker_optimizer"])
    per_rank = state["rng_ranks"]
    if len(per_rank) == world_size:  # every process continues its own random streams
        set_rng_state(per_rank[rank])
    elif rank == 0:  # another process count: only rank 0's streams carry over
        set_rng_state(per_rank[0])
    return state["epoch"], state["step"], list(state["metrics"])


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, global_batch: int, saved_batch: int) -> None:
    now = cfg.to_dict()
    diff = [k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diff:
        changes = ", ".join(f"{k}: {saved.get(k)!r} -> {now[k]!r}" for k in diff)
        raise ValueError(
            f"cannot resume: the config differs from the checkpoint's ({changes}); use the same recipe and "
            "overrides, or start a new run in another --out folder"
        )
    if saved_batch != global_batch:
        raise ValueError(
            f"cannot resume: the checkpoint was trained with a global batch of {saved_batch}, this run has "
            f"{global_batch}; set global_batch={saved_batch} (or batch_size/accum_iter) for this number of processes"
        )
