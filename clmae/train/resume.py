"""Where a run stands (:class:`RunState`), the checkpoint dict that holds it with the weights, the optimizers, the
config and the random states (:func:`training_state`), and a resume from it (:func:`restore`), after checking that the
config, the global batch and the data allow it. Files: :mod:`clmae.train.checkpoint`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..data.fingerprint import fingerprint_change
from .checkpoint import set_rng_state
from .config import MODEL_SHORTHANDS, TrainConfig, resumable_fields


@dataclass
class RunState:
    """Where a run stands: what a checkpoint holds besides the weights, the optimizers, the config and the random
    states (the keys: :mod:`clmae.train.checkpoint`).

    Attributes:
        epoch: epochs completed (the epoch to run or to continue).
        step: optimizer updates completed (the schedule's position).
        epoch_step: updates already done inside ``epoch`` (0 at an epoch's end).
        epoch_sums: this process's running sums of ``epoch``'s losses (device tensors; for its means).
        history: the per-epoch records so far (``metrics`` in the file).
        global_batch: images per update (a resume must keep it).
        data_size: images in the data set (a resume must find as many: the data order depends on it).
        data_fingerprint: the data set's fingerprint (:func:`~clmae.data.fingerprint.data_fingerprint`).
    """

    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    epoch_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    global_batch: int = 0
    data_size: int | None = None
    data_fingerprint: dict[str, Any] | None = None

    @property
    def position(self) -> tuple[int, int]:
        """``(epoch, epoch_step)``: where the run stands in its epochs."""
        return (self.epoch, self.epoch_step)


def training_state(
    run: RunState,
    model: nn.Module,
    mae_optimizer: torch.optim.Optimizer,
    masker_optimizer: torch.optim.Optimizer | None,
    config: TrainConfig,
    rng_ranks: list[dict[str, Any]],
    epoch_sums: list[dict[str, torch.Tensor]] | None = None,
) -> dict[str, Any]:
    """The checkpoint dict (its keys: :mod:`clmae.train.checkpoint`), without its digest
    (:func:`~clmae.train.checkpoint.save_checkpoint` adds it).

    Args:
        run: where the run stands (``run.epoch_sums`` is not read: ``epoch_sums`` holds every process's).
        model: the pretraining model.
        mae_optimizer: AdamW of the encoder and decoder.
        masker_optimizer: AdamW of the masking module (``None`` for MAE).
        config: the run's config.
        rng_ranks: every process's :func:`~clmae.train.checkpoint.rng_state`, in rank order.
        epoch_sums: every process's running loss sums of a checkpoint inside an epoch, in rank order (on the host).
    """
    return {
        "model": model.state_dict(),
        "mae_optimizer": mae_optimizer.state_dict(),
        "masker_optimizer": None if masker_optimizer is None else masker_optimizer.state_dict(),
        "epoch": run.epoch,
        "step": run.step,
        "epoch_step": run.epoch_step,
        "epoch_sums": list(epoch_sums or []),
        "global_batch": run.global_batch,
        "data_size": run.data_size,
        "data_fingerprint": run.data_fingerprint,
        "config": config.to_dict(),
        "rng_ranks": rng_ranks,
        "metrics": run.history,
    }


def restore(
    state: dict[str, Any],
    run: RunState,
    model: nn.Module,
    mae_optimizer: torch.optim.Optimizer,
    masker_optimizer: torch.optim.Optimizer | None,
    config: TrainConfig,
    rank: int = 0,
    world_size: int = 1,
    warn: Callable[[str], None] | None = None,
) -> RunState:
    """Continue a run from a loaded checkpoint (:func:`~clmae.train.checkpoint.load_resume`): model, optimizers and
    this process's random states, after checking that ``config`` and ``run`` (this run's global batch and data size)
    may resume it.

    Args:
        warn: called with a note when the data cannot be checked (a checkpoint without fingerprint) or differs and
            ``config.allow_data_change`` allows it.

    Returns:
        ``run`` itself (updated in place, as ``Module.to``), at the checkpoint's position: its ``epoch``, ``step``,
        ``epoch_step``, ``epoch_sums`` (this process's, on the host) and ``history``.

    Raises:
        ValueError: the config, the global batch or the data size differs from the checkpoint's in a way that
            changes the run.
    """
    _check_resumable(state["config"], config, run.global_batch, state["global_batch"])
    saved_size = state.get("data_size")
    if saved_size is not None and run.data_size is not None and saved_size != run.data_size:
        raise ValueError(
            f"cannot resume: the data set had {saved_size} images when the checkpoint was written and has "
            f"{run.data_size} now, which changes the order of every epoch; resume with the same data, or start a new "
            "run"
        )
    _check_data(state.get("data_fingerprint"), run.data_fingerprint, config, warn or (lambda line: None))
    model.load_state_dict(state["model"])
    mae_optimizer.load_state_dict(state["mae_optimizer"])
    if masker_optimizer is not None:
        masker_optimizer.load_state_dict(state["masker_optimizer"])
    per_rank = state["rng_ranks"]
    if len(per_rank) == world_size:  # every process continues its own random streams
        set_rng_state(per_rank[rank])
    elif rank == 0:  # another process count: only rank 0's streams carry over
        set_rng_state(per_rank[0])
    sums = state.get("epoch_sums") or []
    if sums and len(sums) != world_size:  # another process count: every process carries the mean of the sums
        sums = [{k: sum(s[k] for s in sums) / len(sums) for k in sums[0]}] * world_size
    run.epoch, run.step, run.epoch_step = state["epoch"], state["step"], state.get("epoch_step", 0)
    run.epoch_sums = dict(sums[rank]) if sums else {}
    run.history = list(state["metrics"])
    return run


def _check_data(saved: dict[str, Any] | None, now: dict[str, Any] | None, cfg: TrainConfig, warn: Callable) -> None:
    if now is None:
        return
    if saved is None:
        warn(
            "note: the checkpoint records no fingerprint of its data (an older clmae wrote it): resuming without "
            "checking that the data is the same"
        )
        return
    change = fingerprint_change(saved, now)
    if change is None:
        return
    if cfg.allow_data_change:
        warn(f"resuming on other data than the checkpoint's ({change}), as allow_data_change=true asks")
        return
    raise ValueError(
        f"cannot resume: data {cfg.data!r} is not the data the checkpoint was trained on ({change}); resume with "
        "the same data, or add allow_data_change=true to continue on this data on purpose"
    )


def _check_resumable(saved: dict[str, Any], cfg: TrainConfig, global_batch: int, saved_batch: int) -> None:
    saved, now = _comparable(saved), _comparable(cfg.to_dict())
    may_change = resumable_fields()
    diff = [k for k in now if k not in may_change and saved.get(k) != now[k]]
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


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config dict with its model arguments as the model sees them, one entry ``model_kwargs.KEY`` each:
    ``mask_ratio=0.75`` given or left at its default is the same run (an older checkpoint's config spells it at the
    top level), and a difference names the argument that differs."""
    keys = ("model", "method", "model_kwargs", *MODEL_SHORTHANDS)
    try:
        model = TrainConfig.from_dict({k: config[k] for k in keys if k in config}).pretraining_config(check=False)
    except ValueError:  # not readable as today's model arguments: compare them as written
        return config
    flat = {f"model_kwargs.{k}": v for k, v in model.to_dict().items() if k not in ("arch", "method")}
    return {**{k: v for k, v in config.items() if k not in ("model_kwargs", *MODEL_SHORTHANDS)}, **flat}
