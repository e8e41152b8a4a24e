"""Training checkpoints: one flat dict per file, written atomically, verified by a digest, read with
``torch.load(weights_only=True)``.

``OUT/checkpoint-EEEE.pt`` is written at the end of an epoch (EEEE = epochs completed);
``OUT/checkpoint-EEEE-SSSSSSSS.pt`` inside epoch EEEE (0-based) after SSSSSSSS updates in all (``save_every_steps``).
Each holds::

    model             state dict of the whole pretraining model (encoder, decoder, masking module)
    mae_optimizer     AdamW state of the encoder + decoder
    masker_optimizer  AdamW state of the masking module (None for MAE)
    epoch             epochs completed (the epoch to run or to continue)
    step              optimizer updates completed (the schedule's position)
    epoch_step        updates already done inside ``epoch`` (0 at an epoch's end)
    epoch_sums        every process's running sums of that epoch's losses (for its means), in rank order
    global_batch      images per update (a resume must keep it)
    data_size         images in the data set (a resume must find as many: the data order depends on it)
    data_fingerprint  the data set's fingerprint (clmae.data.fingerprint): a resume must find the same data, unless
                      ``allow_data_change=true``; absent from checkpoints of older versions (resumed with a note)
    config            the TrainConfig as a plain dict
    rng_ranks         every process's random states (torch, cuda, numpy, python), in rank order: each process
                      restores its own when the process count matches, else rank 0's carry over
    metrics           the per-epoch records so far (lambda_cl, losses; for plots)
    digest            SHA-256 over every entry above (keys, tensor dtypes, shapes and bytes, plain values)

``epoch``, ``step``, ``epoch_step``, ``epoch_sums``, ``global_batch``, ``data_size``, ``data_fingerprint`` and
``metrics`` are a
:class:`~clmae.train.resume.RunState` (:func:`~clmae.train.resume.training_state` writes one,
:func:`~clmae.train.resume.restore` reads it back).

The data order, the augmentations and MAE's random masks are functions of (seed, epoch, position), so resuming at
any update continues exactly as an uninterrupted run. The digest is checked before a checkpoint is used: a damaged
file is refused, and ``--resume auto`` falls back to the newest intact checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .._atomic import write_file
from .._checkpoint_file import load_torch_checkpoint
from .._disk import state_nbytes, writing
from .._safetensors import tensor_bytes
from ..models import create_pretraining_model
from .config import TrainConfig

_NAME = re.compile(r"^checkpoint-(\d+)(?:-(\d+))?\.pt$")


class DamagedCheckpointError(ValueError):
    """A checkpoint file is truncated, corrupt, or its contents do not match its digest."""


def checkpoint_path(out: str | os.PathLike, epoch: int, step: int | None = None) -> Path:
    """``OUT/checkpoint-EEEE.pt`` for ``epoch`` epochs completed, or ``OUT/checkpoint-EEEE-SSSSSSSS.pt`` for
    ``step`` updates done inside epoch ``epoch``."""
    name = f"checkpoint-{epoch:04d}" + ("" if step is None else f"-{step:08d}")
    return Path(out) / f"{name}.pt"


def _order(path: Path) -> tuple[int, int] | None:
    m = _NAME.match(path.name)
    if m is None:
        return None
    # An epoch's end (EEEE epochs done) comes after every checkpoint inside epoch EEEE - 1 and before those in EEEE.
    return (int(m.group(1)), -1 if m.group(2) is None else int(m.group(2)))


def list_checkpoints(out: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``out``, oldest first (temporary files of an interrupted write are ignored)."""
    out = Path(out)
    if not out.is_dir():
        return []
    found = [(key, p) for p in out.iterdir() if (key := _order(p)) is not None]
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
    """Restore what :func:`rng_state` returned (its tensors may have been loaded onto a GPU)."""
    torch.set_rng_state(state["torch"].cpu())
    if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.cpu().numpy().astype(np.uint32), *rest))  # noqa: NPY002
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 over a checkpoint dict: keys, tensor dtypes, shapes and bytes, and plain values, in a fixed order."""
    h = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            h.update(f"T{value.dtype}{tuple(value.shape)}".encode())
            h.update(tensor_bytes(value))
        elif isinstance(value, dict):
            h.update(f"D{len(value)}".encode())
            for key in sorted(value, key=repr):
                feed(key)
                feed(value[key])
        elif isinstance(value, (list, tuple)):
            h.update(f"L{len(value)}".encode())
            for item in value:
                feed(item)
        else:  # str, int, float, bool, None
            h.update(f"V{type(value).__name__}:{value!r};".encode())

    feed({k: v for k, v in state.items() if k != "digest"})
    return h.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` with its digest atomically: to a temporary file in the same folder, flushed, then renamed
    over ``path``.

    A crash at any moment leaves either the previous file or the complete new one, never a partial file; a write
    that fails (a full disk: :class:`~clmae._disk.DiskFullError`, naming the folder and the bytes needed and free)
    removes its temporary file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {**state, "digest": state_digest(state)}
    # write_file removes its temporary itself; writing() turns a full disk into one line with the numbers.
    with writing(path.parent, state_nbytes(state), f"checkpoint {path.name}", lambda: None):
        write_file(path, lambda f: torch.save(state, f), what="checkpoint")
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code is unpickled).

    Raises:
        FileNotFoundError: no such file.
        DamagedCheckpointError: the file is truncated or corrupt, or its contents do not match its digest.
        ValueError: the file is not a clmae training checkpoint.
    """
    try:
        state = load_torch_checkpoint(path, map_location)  # clear errors for missing, truncated or foreign files
    except OSError:  # missing, unreadable (permissions, I/O): not damage, never a reason to fall back
        raise
    except ValueError as e:
        raise DamagedCheckpointError(str(e)) from None
    except Exception as e:  # damaged bytes can fail anywhere inside torch.load
        raise DamagedCheckpointError(f"{path} is truncated or corrupt ({type(e).__name__}: {e})") from None
    if "model" not in state or "config" not in state:
        raise ValueError(f"{path} is not a clmae training checkpoint (no 'model' and 'config' entries)")
    saved = state.get("digest")  # checkpoints written before digests were recorded have none: loaded as they are
    if saved is not None and saved != state_digest(state):
        raise DamagedCheckpointError(f"{path} is damaged: its contents do not match the digest written with it")
    return state


def checkpoint_model(state: dict[str, Any]) -> nn.Module:
    """The pretraining model of a loaded checkpoint (:func:`load_checkpoint`), rebuilt from its config, with its
    weights."""
    model = create_pretraining_model(TrainConfig.from_dict(state["config"]).pretraining_config())
    model.load_state_dict(state["model"])
    return model


def find_resume(resume: str | None, out: str | os.PathLike) -> list[Path]:
    """The checkpoints to try, best first: ``None``/``""`` (start fresh, refused if ``out`` holds checkpoints),
    ``auto`` (those in ``out``, newest first; none: start fresh) or a path (only that one)."""
    if not resume:
        if list_checkpoints(out):
            raise ValueError(
                f"{out} already holds checkpoints of a run; pass --resume auto to continue it, or choose another --out"
            )
        return []
    if resume == "auto":
        return list_checkpoints(out)[::-1]
    path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {resume}: no such checkpoint; use --resume auto or a checkpoint-*.pt path")
    return [path]


def load_resume(
    candidates: list[Path],
    map_location: str | torch.device = "cpu",
    warn: Callable[[str], None] | None = None,
) -> tuple[Path | None, dict[str, Any] | None]:
    """The first intact checkpoint of ``candidates`` (see :func:`find_resume`) and its contents.

    With several candidates (``--resume auto``) a damaged one is skipped with a one-line warning; a single named
    checkpoint that is damaged is an error, as is a folder whose checkpoints are all damaged.
    """
    warn = warn or (lambda line: print(line, file=sys.stderr))
    for i, path in enumerate(candidates):
        try:
            return path, load_checkpoint(path, map_location)
        except DamagedCheckpointError as e:
            if len(candidates) == 1:
                raise DamagedCheckpointError(
                    f"{e}; resume from an older checkpoint beside it, or use --resume auto"
                ) from None
            if i + 1 == len(candidates):
                raise DamagedCheckpointError(
                    f"every checkpoint in {path.parent} is damaged (the oldest: {e}); start a new run in another --out"
                ) from None
            warn(f"warning: skipping damaged checkpoint {path.name} ({e}); trying {candidates[i + 1].name}")
    return None, None


def order_of(state: dict[str, Any]) -> tuple[int, int]:
    """Where a checkpoint stands in its run, as :func:`list_checkpoints` sorts the file names."""
    return (state["epoch"], state["step"] if state.get("epoch_step") else -1)


def set_aside_newer(out: str | os.PathLike, state: dict[str, Any], suffix: str) -> list[Path]:
    """Rename the checkpoints in ``out`` that are newer than ``state`` to ``NAME.pt<suffix>`` (no longer listed,
    resumed from or pruned) and return the new paths: a run resumed from an older checkpoint continues from it alone.
    """
    here = order_of(state)
    newer = [p for p in list_checkpoints(out) if _order(p) > here]
    for path in newer:
        os.replace(path, path.with_name(path.name + suffix))
    return [p.with_name(p.name + suffix) for p in newer]


def remove_temporaries(out: str | os.PathLike) -> list[Path]:
    """Delete the temporary checkpoint files that processes killed while writing left in ``out`` (the caller holds
    ``out``'s lock, see :mod:`clmae.train.lock`, so no other process is writing them); return their paths."""
    stale = [p for p in Path(out).glob(".checkpoint-*.pt.tmp*") if not p.name.endswith(f".tmp{os.getpid()}")]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def prune_checkpoints(out: str | os.PathLike, keep: int) -> None:
    """Delete temporary files left by a process of this run killed while writing (:func:`remove_temporaries`) and,
    unless ``keep`` is 0 (keep all), all but the ``keep`` newest end-of-epoch checkpoints and every checkpoint inside
    an epoch but the newest checkpoint."""
    remove_temporaries(out)
    if keep == 0:
        return
    found = list_checkpoints(out)
    ends = [p for p in found if _order(p)[1] == -1]
    doomed = ends[:-keep] + [p for p in found if _order(p)[1] != -1 and p != found[-1]]
    for old in doomed:
        old.unlink(missing_ok=True)
