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

from .._io import load_torch_checkpoint

_NAME = re.compile(r"^checkpoint-(\d+)\.pt$")


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
    """The checkpoint to resume from: ``None``/``""`` (start fresh), ``auto`` (the newest in ``out``, if any) or a
    path."""
    if not resume:
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
