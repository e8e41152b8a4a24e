"""CL-MAE (and MAE baseline) pretraining, from one CPU to many GPU nodes. Read it top to bottom.

Commands (``--resume auto`` continues from the newest checkpoint in ``--out``; ``key=value`` overrides any field of
:class:`~clmae.train.config.TrainConfig`)::

    # one GPU, or a CPU (the Fashion-MNIST recipe finishes in minutes on two cores)
    clmae train --recipe clmae_fmnist_tiny --data fmnist-sample --out runs/fmnist

    # one node with 8 GPUs
    torchrun --standalone --nproc_per_node=8 -m clmae train --recipe clmae_vit_b16_in1k \\
        --data /data/imagenet/train --out runs/clmae_vit_b16

    # two nodes with 8 GPUs each: run on both, NODE_RANK=0 on the master node and 1 on the other; MASTER_ADDR is
    # the master node's address, --out a folder both nodes see (checkpoints are written by rank 0)
    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=$NODE_RANK --master_addr=$MASTER_ADDR --master_port=29500 \\
        -m clmae train --recipe clmae_vit_b16_in1k --data /data/imagenet/train --out /shared/runs/clmae_vit_b16

    # the MAE baseline: identical code paths, uniform random masks
    clmae train --recipe clmae_fmnist_tiny --method mae --out runs/fmnist_mae

Per batch: one MAE update, then one masking-module update (:func:`clmae.train.train_step`), two AdamW optimizers on
one per-iteration warm-up + cosine schedule, LR = base_lr * effective batch / 256, lambda_cl per epoch
(docs/method.md §4-6). Outputs in ``--out``: ``config.yaml``, ``metrics.jsonl``, ``checkpoint-EEEE.pt`` (and
``checkpoint-EEEE-SSSSSSSS.pt`` inside epochs with ``save_every_steps``), ``vis/masks-EEEE.png``, ``history.png``
and, at the end, ``export/`` (Hub-ready weights, written whole or not at all); ``.lock`` while the run lives. In
``metrics.jsonl`` the records every ``log_every`` updates are rank 0's own values (its last micro-batch for the mask
statistics); the ``"type": "epoch"`` records are means over the epoch and over all processes; the first record also
holds the ``mean`` and ``std`` the images were normalised with.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from timm.utils import random_seed
from tqdm import tqdm

from .._atomic import write_text
from ..curriculum import curriculum_factor, curriculum_phase
from ..data.fingerprint import data_fingerprint
from ..models.factory import check_patch_grid, check_pretraining_fits, create_pretraining_model
from ..models.pretrainer import CLMAE
from ..viz import mask_picture
from .batches import training_batches
from .checkpoint import find_resume, load_resume, order_of, remove_temporaries, set_aside_newer
from .config import TrainConfig, save_config
from .distributed import (
    DistInfo,
    all_reduce_grads,
    all_reduce_mean,
    cleanup,
    gather_objects,
    init_distributed,
    wrap_ddp,
)
from .export import export_complete, export_pretrained, remove_export_debris
from .graph import static_update
from .init import init_architecture, initialize, preprocessing_note
from .lock import RunLock
from .metrics import MetricsLog, mask_statistics, read_metrics
from .probe import MaskProbe, probe_path
from .resume import RunState, restore
from .saving import NonFiniteLossError, RunCheckpoints, resume_hint, stop_if_not_finite, stopped_by
from .schedule import lr_at, peak_lr, set_lr
from .signals import GracefulStop, GraceOver, Interrupted, Terminated
from .step import build_optimizers, compile_in_place, train_step
from .visualize import plot_history, save_png

LOSS_KEYS = ("mae_loss", "masker_loss", "rec", "gauss", "kl", "div", "score_mean")
__all__ = ["NonFiniteLossError", "build_model", "train"]


def train(cfg: TrainConfig, resume: str | None = None) -> dict[str, Any]:
    """Run pretraining as configured; under ``torchrun`` every process calls this.

    In order, each once: the config's fields checked, the architecture ``init=`` gives, the model sized for the device
    and built on it (every check before anything is written, ``--out`` included), then the run.

    Args:
        cfg: the run's config.
        resume: ``None`` (fresh), ``"auto"`` (newest intact checkpoint in ``cfg.out``, fresh if none) or a
            checkpoint path. A run whose epochs are all done but whose export is missing is finished (export and
            pictures) without training.

    Returns:
        ``history`` (one record per epoch run here), ``checkpoint`` (the last written or resumed from), ``export``
        (the weights folder or ``None``) and ``step``.
    """
    cfg.validate()
    info = init_distributed(cfg.device)
    lock = RunLock(cfg.out)
    try:
        log = print if info.is_main else _quiet  # rank 0 speaks; the metrics go to metrics.jsonl (MetricsLog)
        cfg = init_architecture(cfg, log)
        model = build_model(cfg, info.device)
        error = None
        if info.is_main:  # one run per --out; the other processes only learn whether rank 0 got the lock
            try:
                lock.acquire()
            except ValueError as e:
                error = str(e)
        errors = [e for e in gather_objects(error) if e]
        if errors:
            raise ValueError(errors[0])
        run = RunState()  # where the run stands, kept up to date by _train: for the line an interrupt prints
        with GracefulStop(cfg.term_grace) as stop:
            try:
                return _train(cfg, model, resume, info, stop, run, log)
            except GraceOver:
                stopped = Interrupted if stop.by_ctrl_c else Terminated
                raise stopped(
                    f"stopped by {stopped_by(stop)} after {run.step} updates: what was in progress was abandoned "
                    f"after term_grace={cfg.term_grace:g} s; {resume_hint(cfg.out)}"
                ) from None
            except (Interrupted, Terminated):
                raise
            except KeyboardInterrupt:
                raise Interrupted(
                    f"stopped by Ctrl-C in epoch {min(run.epoch, cfg.epochs - 1) + 1} of {cfg.epochs} after "
                    f"{run.step} updates; {resume_hint(cfg.out)}"
                ) from None
    finally:
        lock.release()
        cleanup()


def _quiet(line: str) -> None:
    """The log of processes other than rank 0."""


def build_model(cfg: TrainConfig, device: torch.device) -> CLMAE:
    """The run's pretraining model on ``device``: sized once (weights, gradients and AdamW's two moments must fit
    ``device``), built once, with the same initialisation on every process (DDP broadcasts rank 0's weights anyway).

    Raises:
        ValueError: a model that does not build or fit, naming the argument; nothing is written.
    """
    model_cfg = cfg.pretraining_config(check=False)
    check_pretraining_fits(model_cfg, device, 4, "training (weights, gradients, AdamW's two moments)")
    torch.manual_seed(cfg.seed)
    # built on the CPU and moved: the initial weights are the same on every device
    model = create_pretraining_model(model_cfg, check_size=False)
    check_patch_grid(model)
    return model.to(device)


def _update_record(stats: dict[str, torch.Tensor], mask_ratio: float, **head: float) -> dict[str, float]:
    """A logged update's record: ``head`` (epoch, step, lam, lr), then its losses and mask statistics (host sync)."""
    values = {k: stats[k] for k in LOSS_KEYS if k in stats}
    values.update(mask_statistics(stats["mask"], mask_ratio, stats.get("scores")))
    return {**head, **{k: v.item() for k, v in values.items()}}


def _epoch_means(sums: dict[str, torch.Tensor], steps_per_epoch: int) -> dict[str, float]:
    """The epoch's mean losses, over its updates and over all processes (every process calls this)."""
    keys = [k for k in LOSS_KEYS if k in sums]
    return dict(zip(keys, all_reduce_mean(torch.stack([sums[k] for k in keys]) / steps_per_epoch).tolist()))


def _outputs(cfg: TrainConfig, master: bool, resumed_step: int | None) -> MetricsLog:
    """``config.yaml``, ``vis/`` and the metrics log (rank 0 writes): a resumed run's ``metrics.jsonl`` is cut back to
    the checkpoint's ``resumed_step``, a fresh run's emptied."""
    out = Path(cfg.out)
    metrics = MetricsLog(out, enabled=master)
    if master:
        (out / "vis").mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        if metrics.path.exists():
            kept = (
                []
                if resumed_step is None
                else [r for r in read_metrics(metrics.path) if r.get("step", 0) <= resumed_step]
            )
            write_text(metrics.path, "".join(json.dumps(r) + "\n" for r in kept), what="metrics file")
    return metrics


def _train(
    cfg: TrainConfig,
    model: CLMAE,
    resume: str | None,
    info: DistInfo,
    stop: GracefulStop,
    run: RunState,
    log: Callable[[str], None],
) -> dict[str, Any]:
    out, device, master = Path(cfg.out), info.device, info.is_main
    if master:  # what killed processes of this run left (the run holds --out's lock): removed before anything else
        remove_temporaries(out)
        remove_export_debris(out / "export")
    random_seed(cfg.seed, info.rank)  # global RNGs at seed + rank; data order, augmentation, MAE masks: own seeds

    # The checkpoint to resume from (verified), or the weights to start from (init=): read before the data, so that
    # a damaged checkpoint or weights that do not fit stop the run at once.
    ckpt, state = load_resume(find_resume(resume, out), device, warn=log)
    chosen = gather_objects(None if ckpt is None else order_of(state))  # also waits until every process has read it
    if len(set(chosen)) > 1:
        raise ValueError(f"the processes found different checkpoints in {out} ({chosen}); give --out on a shared disk")
    if master and ckpt is not None:  # newer checkpoints (damaged, or of an abandoned continuation) are set aside
        aside = set_aside_newer(out, state, ".damaged" if resume == "auto" else ".abandoned")
        if aside:
            log(f"set aside {len(aside)} newer checkpoint(s), no longer used: {', '.join(p.name for p in aside)}")
    if ckpt is None and cfg.init:  # continued pretraining (clmae.train.init); the run's random streams untouched
        with torch.random.fork_rng(devices=[]):
            initialize(model, cfg.init, log=log)

    # Data: every process reads its own micro-batch chunks of each global batch, through one of three pipelines.
    batches = training_batches(cfg, model, info.world_size, info.rank, device)
    data, steps_per_epoch, global_batch = batches.data, batches.steps_per_epoch, batches.global_batch
    total_steps, warmup_steps = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)
    lr_max = peak_lr(cfg.base_lr, global_batch, cfg.lr)

    # Optimizers: one AdamW per module, same hyper-parameters and schedule.
    optimizers = build_optimizers(model, lr_max, cfg.weight_decay, cfg.betas)

    # Resume: model, both optimizers, schedule and data position, curriculum, RNG states; config checked.
    run.global_batch, run.data_size = global_batch, len(data.dataset)
    run.data_fingerprint = data_fingerprint(data.dataset)
    if ckpt is not None:
        restore(state, run, model, *optimizers, cfg, info.rank, info.world_size, warn=log)
        del state
        run.epoch_sums = {k: v.to(device) for k, v in run.epoch_sums.items()}
        where = f" and {run.epoch_step} updates into epoch {run.epoch + 1}" if run.epoch_step else ""
        log(f"resumed from {ckpt}: {run.epoch} epochs{where}, {run.step} updates done")
    resumed_at = run.position
    if cfg.compile:
        compile_in_place(model)
    ddp = wrap_ddp(model, info)
    sync_masker = all_reduce_grads if info.distributed else None
    static = static_update(cfg, info.distributed, model, optimizers, batches, log) if cfg.cuda_graph else None

    # Outputs (rank 0 only): config, metrics (cut back to the checkpoint when resuming), pictures.
    metrics = _outputs(cfg, master, run.step if ckpt else None)
    log(
        f"{cfg.method} {cfg.model} on {data.description}: {info.world_size} process(es) on {device.type}, global "
        f"batch {global_batch} ({cfg.batch_size} x {batches.accum} accumulation x {info.world_size}), peak lr "
        f"{lr_max:.3g}, {steps_per_epoch} updates/epoch, {cfg.epochs} epochs"
    )
    log(f"preprocessing: images normalised with mean {tuple(data.mean)}, std {tuple(data.std)}")
    metrics.first = {"mean": [float(v) for v in data.mean], "std": [float(v) for v in data.std]}
    if master and cfg.init and ckpt is None and (note := preprocessing_note(cfg.init, data.mean, data.std)):
        log(note)
    vis_images = torch.stack([data.preview[i] for i in range(min(cfg.vis_images, len(data.preview)))]).to(device)
    bar = tqdm(
        total=total_steps * global_batch,
        initial=run.step * global_batch,
        unit="img",
        unit_scale=True,
        disable=not (master and cfg.progress),
        dynamic_ncols=True,
        mininterval=1.0,
    )
    checkpoints = RunCheckpoints(cfg, info, model, optimizers, run, ckpt)

    model.train()
    bad = torch.zeros((), device=device)  # counts non-finite losses on the device: no per-step host sync
    probe = MaskProbe(min(cfg.mask_probe, len(data.dataset)), model.num_patches, device) if cfg.mask_probe else None
    for epoch in range(run.epoch, cfg.epochs):
        lam = curriculum_factor(epoch, cfg.epochs) if cfg.fixed_lambda is None else cfg.fixed_lambda
        first = run.epoch_step  # updates of this epoch already done (a run resumed inside it)
        checkpoints.stop_if_asked(stop, run, bad, sync=True)  # before the epoch draws anything: resumes exactly
        if probe:
            probe.reset()
        t_epoch = t_log = time.perf_counter()
        updates = static.epoch(batches.epoch_plan(epoch, first), lam) if static else batches.epoch(epoch, first)
        for micro, indices in updates:
            lr = lr_at(run.step, total_steps, warmup_steps, lr_max, cfg.min_lr)
            log_now = (run.step + 1) % cfg.log_every == 0
            if static:  # the same update from buffers allocated once (a CUDA graph's replay on CUDA)
                stats = static(lr, batches.mask_seeds(epoch, run.epoch_step) if model.masker is None else None)
            else:
                set_lr(optimizers, lr)
                gens = batches.mask_generators(epoch, run.epoch_step) if model.masker is None else None  # MAE's masks
                stats = train_step(
                    model,
                    micro,
                    lam,
                    *optimizers,
                    amp=cfg.amp,
                    generator=gens,
                    ddp=ddp,
                    sync_masker_grads=sync_masker,
                    return_masks=log_now or probe is not None,
                )
            if probe:
                for index, mask in zip(indices, stats["masks"]):
                    probe.record(index, mask)
            bad += ~torch.isfinite(stats["mae_loss"] + stats.get("masker_loss", 0.0))
            for k in LOSS_KEYS:
                if k in stats:
                    run.epoch_sums[k] = run.epoch_sums.get(k, 0.0) + stats[k]
            run.step, run.epoch_step = run.step + 1, run.epoch_step + 1
            bar.update(global_batch)
            if log_now:
                stop_if_not_finite(bad, epoch, run.step, out)
                now = time.perf_counter()
                record = _update_record(stats, model.mask_ratio, epoch=epoch, step=run.step, lam=lam, lr=lr)
                record["images_per_s"] = cfg.log_every * global_batch / (now - t_log)
                t_log = now
                metrics.log(record, run.step)
                bar.set_postfix(epoch=epoch, lam=f"{lam:+.2f}", loss=f"{record['mae_loss']:.4f}", refresh=False)
            if run.epoch_step < steps_per_epoch:  # inside the epoch: step checkpoints, then SIGTERM
                if cfg.save_every_steps and run.step % cfg.save_every_steps == 0:
                    checkpoints.save(run, bad)
                checkpoints.stop_if_asked(stop, run, bad, sync=run.step % cfg.log_every == 0)

        # End of epoch: means over all processes, then checkpoint and pictures (rank 0).
        stop_if_not_finite(bad, epoch, run.step, out)
        seconds = time.perf_counter() - t_epoch
        record = {"epoch": epoch, "step": run.step, "lam": lam, "phase": curriculum_phase(lam), "lr": lr}
        record.update(_epoch_means(run.epoch_sums, steps_per_epoch))
        record.update(images_per_s=(steps_per_epoch - first) * global_batch / seconds, seconds=seconds)
        run.history.append(record)
        run.epoch, run.epoch_step, run.epoch_sums = epoch + 1, 0, {}
        if probe:
            probe.save(probe_path(out, epoch) if master else None, info.distributed)
        if run.epoch % cfg.save_every == 0 or run.epoch == cfg.epochs:
            checkpoints.save(run, bad)
        if master:
            metrics.log({"type": "epoch", **record}, run.step, prefix="epoch")
            if run.epoch == cfg.epochs or (cfg.vis_every and run.epoch % cfg.vis_every == 0):
                picture = mask_picture(model, vis_images, data.mean, data.std)
                save_png(picture, out / "vis" / f"masks-{run.epoch:04d}.png")
                plot_history(run.history, out / "history.png")
    bar.close()
    metrics.close()

    # The end: the weights folder, written whole or not at all. A resumed run whose epochs were done but whose
    # export (or final pictures) was lost to a crash gets them now.
    exported = None
    if master and resumed_at == (cfg.epochs, 0):
        final_vis = out / "vis" / f"masks-{cfg.epochs:04d}.png"
        if not final_vis.is_file():
            save_png(mask_picture(model, vis_images, data.mean, data.std), final_vis)
        if not (out / "history.png").is_file() and run.history:
            plot_history(run.history, out / "history.png")
    if master and cfg.export and (resumed_at[0] < cfg.epochs or not export_complete(out / "export")):
        exported = export_pretrained(model, out / "export", cfg.to_dict())
        log(f"done: weights in {exported}, checkpoints and metrics in {out}")
    if info.distributed:
        dist.barrier()
    return {"history": run.history, "checkpoint": checkpoints.last, "export": exported, "step": run.step}
