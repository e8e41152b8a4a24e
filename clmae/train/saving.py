"""A run's checkpoints as training writes them: rank 0 writes, every process gathers; never of a NaN state; what a
stop (SIGTERM, Ctrl-C, a NaN loss) says about them. The file format is :mod:`clmae.train.checkpoint`'s."""

from __future__ import annotations

from pathlib import Path

import torch

from .checkpoint import checkpoint_path, list_checkpoints, prune_checkpoints, rng_state, save_checkpoint
from .config import TrainConfig
from .distributed import DistInfo, all_reduce_mean, gather_objects
from .resume import RunState, training_state
from .signals import GracefulStop, Interrupted, Terminated


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped without writing a checkpoint."""


def stop_if_not_finite(bad: torch.Tensor, epoch: int, step: int, out: Path) -> None:
    """Raise if any process saw a NaN/inf loss since the last check (the only place the flag reaches the host)."""
    if all_reduce_mean(bad).item() > 0:
        kept = list_checkpoints(out)
        last = f"the newest checkpoint is {kept[-1]}" if kept else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"the loss became NaN or inf in epoch {epoch} (by update {step}); stopped without saving: {last}. "
            "Lower the learning rate (base_lr or lr) or lengthen warmup_epochs, then rerun with --resume auto."
        )


def resume_hint(out: str | Path) -> str:
    """How to go on from what ``out`` holds, for the line a stopped run prints."""
    kept = list_checkpoints(out)
    if not kept:
        return "no checkpoint was written yet: rerun the command to start again"
    return f"the newest checkpoint is {kept[-1]}: continue with the same command and --resume auto"


def stopped_by(stop: GracefulStop) -> str:
    """``"Ctrl-C"`` or ``"SIGTERM"``: what asked ``stop`` to stop."""
    return "Ctrl-C" if stop.by_ctrl_c else "SIGTERM"


def _stop_requested(stop: GracefulStop, info: DistInfo, sync: bool) -> bool:
    """Whether to stop for SIGTERM or Ctrl-C now; under torchrun every process answers the same, at ``sync``
    points only."""
    if not info.distributed:
        return stop.requested is not None
    if not sync:
        return False
    flag = torch.tensor(float(stop.requested is not None), device=info.device)
    return all_reduce_mean(flag).item() > 0


class RunCheckpoints:
    """A run's checkpoints: rank 0 writes them, every process takes part in the gathers; never of a NaN state.

    ``saved_at`` is the position (epoch, updates into it) the newest one holds, at first where the run starts
    (nothing to save there); ``last`` is the newest written on rank 0, else ``resumed_from``.
    """

    def __init__(
        self,
        cfg: TrainConfig,
        info: DistInfo,
        model: torch.nn.Module,
        optimizers: tuple,
        run: RunState,
        resumed_from: Path | None,
    ) -> None:
        self.cfg, self.info, self.out, self.model, self.optimizers = cfg, info, Path(cfg.out), model, optimizers
        self.saved_at, self.last = run.position, resumed_from

    def save(self, run: RunState, bad: torch.Tensor) -> Path | None:
        """Checkpoint ``run``'s position (inside an epoch after checking the NaN flag ``bad``; an epoch's end has
        just been checked); returns the file on rank 0."""
        self.saved_at = run.position
        if run.epoch_step:
            stop_if_not_finite(bad, run.epoch, run.step, self.out)
        rng_ranks = gather_objects(rng_state())
        sums_ranks = gather_objects({k: v.cpu() for k, v in run.epoch_sums.items()}) if run.epoch_step else []
        if not self.info.is_main:
            return None
        state = training_state(run, self.model, *self.optimizers, self.cfg, rng_ranks, sums_ranks)
        path = save_checkpoint(state, checkpoint_path(self.out, run.epoch, run.step if run.epoch_step else None))
        prune_checkpoints(self.out, self.cfg.keep_checkpoints)
        self.last = path
        return path

    def stop_if_asked(self, stop: GracefulStop, run: RunState, bad: torch.Tensor, sync: bool) -> None:
        """On SIGTERM or Ctrl-C: a checkpoint of ``run``'s position, unless one holds it, then :class:`Terminated`
        (:class:`Interrupted` for Ctrl-C)."""
        if not _stop_requested(stop, self.info, sync):
            return
        wrote = self.save(run, bad) if run.position != self.saved_at else None
        stop.disarm()
        if wrote is not None:
            done = f"wrote {wrote}: continue with the same command and --resume auto"
        else:
            done = resume_hint(self.out) if run.step else "no update was done: rerun the command to start again"
        stopped = Interrupted if stop.by_ctrl_c else Terminated
        raise stopped(
            f"stopped by {stopped_by(stop)} after {run.step} updates (epoch {run.epoch + 1} of {self.cfg.epochs}); "
            f"{done}"
        )
