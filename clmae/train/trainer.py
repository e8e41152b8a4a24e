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
statistics); the ``"type": "epoch"`` records are means over the epoch and over all processes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from timm.utils import random_seed
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..curriculum import curriculum_factor, curriculum_phase
from ..data import DeviceImages, GlobalBatchSampler, PretrainingData, build_pretraining_data, item_seed
from ..data.decode import BatchDecoder, EncodedImages, collate_encoded
from ..models import CLMAE, create_pretraining_model
from ..models.factory import check_pretraining_fits
from ..viz import mask_picture
from .checkpoint import (
    checkpoint_path,
    find_resume,
    list_checkpoints,
    load_resume,
    order_of,
    prune_checkpoints,
    remove_temporaries,
    restore,
    rng_state,
    save_checkpoint,
    set_aside_newer,
    training_state,
)
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
from .init import initialize
from .lock import RunLock
from .metrics import MetricsLog, mask_statistics, read_metrics
from .probe import MaskProbe, probe_path
from .schedule import lr_at, peak_lr, set_lr
from .signals import GracefulStop, GraceOver, Interrupted, Terminated
from .step import build_optimizers, compile_in_place, train_step
from .visualize import plot_history

LOSS_KEYS = ("mae_loss", "masker_loss", "rec", "gauss", "kl", "div", "score_mean")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the run stopped without writing a checkpoint."""


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


def _stop_if_not_finite(bad: torch.Tensor, epoch: int, step: int, out: Path) -> None:
    """Raise if any process saw a NaN/inf loss since the last check (the only place the flag reaches the host)."""
    if all_reduce_mean(bad).item() > 0:
        kept = list_checkpoints(out)
        last = f"the newest checkpoint is {kept[-1]}" if kept else "no checkpoint was written yet"
        raise NonFiniteLossError(
            f"the loss became NaN or inf in epoch {epoch} (by update {step}); stopped without saving: {last}. "
            "Lower the learning rate (base_lr or lr) or lengthen warmup_epochs, then rerun with --resume auto."
        )


def train(cfg: TrainConfig, resume: str | None = None) -> dict[str, Any]:
    """Run pretraining as configured; under ``torchrun`` every process calls this.

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
        error = None
        if info.is_main:  # one run per --out; the other processes only learn whether rank 0 got the lock
            try:
                lock.acquire()
            except ValueError as e:
                error = str(e)
        errors = [e for e in gather_objects(error) if e]
        if errors:
            raise ValueError(errors[0])
        reached = {"step": 0, "epoch": 0}  # how far the run got, for the line an interrupt prints
        with GracefulStop(cfg.term_grace) as stop:
            try:
                return _train(cfg, resume, info, stop, reached)
            except GraceOver:
                raise Terminated(
                    f"stopped by SIGTERM after {reached['step']} updates: what was in progress was abandoned after "
                    f"term_grace={cfg.term_grace:g} s; {_resume_hint(cfg.out)}"
                ) from None
            except (Interrupted, Terminated):
                raise
            except KeyboardInterrupt:
                raise Interrupted(
                    f"stopped by Ctrl-C in epoch {reached['epoch'] + 1} of {cfg.epochs} after {reached['step']} "
                    f"updates; {_resume_hint(cfg.out)}"
                ) from None
    finally:
        lock.release()
        cleanup()


def _resume_hint(out: str | Path) -> str:
    kept = list_checkpoints(out)
    if not kept:
        return "no checkpoint was written yet: rerun the command to start again"
    return f"the newest checkpoint is {kept[-1]}: continue with the same command and --resume auto"


def _stop_requested(stop: GracefulStop, info: DistInfo, sync: bool) -> bool:
    """Whether to stop for SIGTERM now; under torchrun every process answers the same, at ``sync`` points only."""
    if not info.distributed:
        return stop.requested is not None
    if not sync:
        return False
    flag = torch.tensor(float(stop.requested is not None), device=info.device)
    return all_reduce_mean(flag).item() > 0


def _train(
    cfg: TrainConfig, resume: str | None, info: DistInfo, stop: GracefulStop, reached: dict[str, int]
) -> dict[str, Any]:
    out, device, master = Path(cfg.out), info.device, info.is_main
    log = print if master else lambda line: None
    if master:  # what killed processes of this run left (the run holds --out's lock): removed before anything else
        remove_temporaries(out)
        remove_export_debris(out / "export")

    # Model: sized first (weights, gradients and AdamW's two moments must fit the device), then the same
    # initialisation on every process (DDP broadcasts rank 0's weights anyway).
    check_pretraining_fits(cfg.pretraining_config(), device, 4, "training (weights, gradients, AdamW's two moments)")
    torch.manual_seed(cfg.seed)
    model = create_pretraining_model(cfg.pretraining_config()).to(device)
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

    # Data: every process reads its own micro-batch chunks of each global batch (see GlobalBatchSampler).
    data = model_data(cfg.data, model, cfg.seed, skip_unreadable=cfg.skip_unreadable, augment=cfg.augment)
    sizes = gather_objects(len(data.dataset))
    if len(set(sizes)) > 1:
        raise ValueError(f"the processes found data sets of different sizes {sizes} in {cfg.data}; check the files")
    accum = accum_steps(cfg, info.world_size)
    sampler = GlobalBatchSampler(
        data.dataset, cfg.batch_size, accum, info.world_size, info.rank, cfg.seed, epoch_size=cfg.epoch_size
    )
    on_device = isinstance(data.dataset, DeviceImages)  # small sets: held on the device, no DataLoader
    decoder = None  # image files decoded in batches on the device: the workers only read the files
    if on_device:
        data.dataset.to(device)
    else:
        loader_data, collate = data.dataset, None
        if cfg.decode == "device" or (cfg.decode == "auto" and device.type == "cuda"):
            loader_data, collate = EncodedImages(data.dataset.source), collate_encoded
            decoder = BatchDecoder(
                model.img_size[0],
                data.mean,
                data.std,
                model.in_chans,
                augment=cfg.augment is not False,
                device=device,
                names=loader_data.name,
            )
        loader = DataLoader(
            loader_data,
            batch_size=cfg.batch_size,
            sampler=sampler,
            num_workers=cfg.num_workers,
            pin_memory=device.type == "cuda" and decoder is None,  # the decoder pins what it copies itself
            persistent_workers=cfg.num_workers > 0,
            drop_last=True,
            collate_fn=collate,
        )
    steps_per_epoch, global_batch = sampler.steps_per_epoch, sampler.global_batch
    total_steps, warmup_steps = cfg.epochs * steps_per_epoch, round(cfg.warmup_epochs * steps_per_epoch)
    lr_max = peak_lr(cfg.base_lr, global_batch, cfg.lr)

    # Optimizers: one AdamW per module, same hyper-parameters and schedule.
    mae_opt, masker_opt = build_optimizers(model, lr_max, cfg.weight_decay, cfg.betas)

    # Resume: model, both optimizers, schedule and data position, curriculum, RNG states; config checked.
    start_epoch, start_step, step, history, sums, last_ckpt = 0, 0, 0, [], {}, None
    if ckpt is not None:
        resumed = restore(
            state, model, mae_opt, masker_opt, cfg, global_batch, info.rank, info.world_size, len(data.dataset)
        )
        del state
        start_epoch, start_step, step, history = (resumed[k] for k in ("epoch", "epoch_step", "step", "history"))
        sums = {k: v.to(device) for k, v in resumed["epoch_sums"].items()}
        last_ckpt = ckpt
        if master:
            where = f" and {start_step} updates into epoch {start_epoch + 1}" if start_step else ""
            print(f"resumed from {ckpt}: {start_epoch} epochs{where}, {step} updates done")
    if cfg.compile:
        compile_in_place(model)
    ddp = wrap_ddp(model, info)
    sync_masker = all_reduce_grads if info.distributed else None

    # Outputs (rank 0 only): config, metrics (cut back to the checkpoint when resuming), pictures.
    log = MetricsLog(out, enabled=master)
    if master:
        (out / "vis").mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
        if log.path.exists():
            kept = [r for r in read_metrics(log.path) if r.get("step", 0) <= step] if ckpt else []
            log.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        print(
            f"{cfg.method} {cfg.model} on {data.description}: {info.world_size} process(es) on {device.type}, "
            f"global batch {global_batch} ({cfg.batch_size} x {accum} accumulation x {info.world_size}), peak lr "
            f"{lr_max:.3g}, {steps_per_epoch} updates/epoch, {cfg.epochs} epochs"
        )
    vis_images = torch.stack([data.preview[i] for i in range(min(cfg.vis_images, len(data.preview)))]).to(device)
    bar = tqdm(
        total=total_steps * global_batch,
        initial=step * global_batch,
        unit="img",
        unit_scale=True,
        disable=not (master and cfg.progress),
        dynamic_ncols=True,
        mininterval=1.0,
    )

    saved_at = (start_epoch, start_step)  # the position the newest checkpoint holds (or the start: nothing to save)

    def save(epoch_done: int, epoch_step: int) -> Path | None:
        """Checkpoint (rank 0 writes; every process takes part in the gathers); never of a NaN state (an epoch's end
        has just been checked)."""
        nonlocal saved_at
        saved_at = (epoch_done, epoch_step)
        if epoch_step:
            _stop_if_not_finite(bad, epoch_done, step, out)
        rng_ranks = gather_objects(rng_state())
        sums_ranks = gather_objects({k: v.cpu() for k, v in sums.items()}) if epoch_step else []
        if not master:
            return None
        state = training_state(
            model,
            mae_opt,
            masker_opt,
            epoch_done,
            step,
            global_batch,
            cfg,
            rng_ranks,
            history,
            epoch_step,
            sums_ranks,
            len(data.dataset),
        )
        path = save_checkpoint(state, checkpoint_path(out, epoch_done, step if epoch_step else None))
        prune_checkpoints(out, cfg.keep_checkpoints)
        return path

    model.train()
    bad = torch.zeros((), device=device)  # counts non-finite losses on the device: no per-step host sync
    probe = MaskProbe(min(cfg.mask_probe, len(data.dataset)), model.num_patches, device) if cfg.mask_probe else None

    def stop_if_asked(epoch: int, s: int, sync: bool) -> None:
        """On SIGTERM: a checkpoint of this position (``s`` updates done in ``epoch``), unless one holds it, then
        :class:`Terminated`."""
        if not _stop_requested(stop, info, sync):
            return
        wrote = save(epoch, s) if (epoch, s) != saved_at else None
        stop.disarm()
        if wrote is not None:
            done = f"wrote {wrote}: continue with the same command and --resume auto"
        else:
            done = _resume_hint(out) if step else "no update was done: rerun the command to start again"
        raise Terminated(f"stopped by SIGTERM after {step} updates (epoch {epoch + 1} of {cfg.epochs}); {done}")

    for epoch in range(start_epoch, cfg.epochs):
        lam = curriculum_factor(epoch, cfg.epochs) if cfg.fixed_lambda is None else cfg.fixed_lambda
        first = start_step if epoch == start_epoch else 0
        reached.update(epoch=epoch, step=step)
        stop_if_asked(epoch, first, sync=True)  # before the epoch draws anything: a checkpoint here resumes exactly
        sampler.set_epoch(epoch, first)
        if not first:
            sums = {}
        # (indices, seeds) of this process's micro-batches, on the device for the whole epoch (no copy per step):
        # the device path reads them; the DataLoader reads the same ones through the sampler; the probe names images.
        plan = [t.to(device) for t in sampler.plan()] if on_device or probe else None
        crops = data.dataset.crop_plan(plan[1]) if on_device and data.dataset.augment else None  # once per epoch
        if not on_device:
            with torch.random.fork_rng(devices=[]):  # the DataLoader draws a seed: keep it off the run's RNG
                batches = iter(loader)
        if probe:
            probe.reset()
        t_epoch = t_log = time.perf_counter()
        for s in range(first, steps_per_epoch):
            if s > first:  # the update before has finished
                stop_if_asked(epoch, s, sync=step % cfg.log_every == 0)
            lr = lr_at(step, total_steps, warmup_steps, lr_max, cfg.min_lr)
            set_lr((mae_opt, masker_opt), lr)
            micro, indices = [], []
            for a in range(accum):
                k = (s - first) * accum + a
                index, seeds = (plan[0][k], plan[1][k]) if plan is not None else (None, None)
                indices.append(index)
                if on_device:
                    micro.append(data.dataset.batch(index, seeds, None if crops is None else [c[k] for c in crops]))
                elif decoder is not None:
                    micro.append(decoder(*next(batches)))
                else:
                    micro.append(next(batches).to(device, non_blocking=True))
            gens = None
            if model.masker is None:  # MAE's random masks: one seed per micro-batch chunk, whatever the split
                chunks = [(s * accum + a) * info.world_size + info.rank for a in range(accum)]
                gens = [torch.Generator(device).manual_seed(item_seed(cfg.seed, epoch, -1 - c)) for c in chunks]
            log_now = (step + 1) % cfg.log_every == 0
            stats = train_step(
                model,
                micro,
                lam,
                mae_opt,
                masker_opt,
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
                    sums[k] = sums.get(k, 0.0) + stats[k]
            step += 1
            reached["step"] = step
            bar.update(global_batch)
            if log_now:
                _stop_if_not_finite(bad, epoch, step, out)
                now = time.perf_counter()
                values = {k: stats[k] for k in LOSS_KEYS if k in stats}
                values.update(mask_statistics(stats["mask"], cfg.mask_ratio, stats.get("scores")))
                record = {"epoch": epoch, "step": step, "lam": lam, "lr": lr}
                record.update({k: v.item() for k, v in values.items()})
                record["images_per_s"] = cfg.log_every * global_batch / (now - t_log)
                t_log = now
                log.log(record, step)
                bar.set_postfix(epoch=epoch, lam=f"{lam:+.2f}", loss=f"{record['mae_loss']:.4f}", refresh=False)
            if cfg.save_every_steps and step % cfg.save_every_steps == 0 and s + 1 < steps_per_epoch:
                last_ckpt = save(epoch, s + 1) or last_ckpt

        # End of epoch: means over all processes, then checkpoint and pictures (rank 0).
        _stop_if_not_finite(bad, epoch, step, out)
        done = steps_per_epoch - first  # updates run in this process for this epoch (sums cover all of them)
        means = all_reduce_mean(torch.stack([sums[k] for k in LOSS_KEYS if k in sums]) / steps_per_epoch).tolist()
        seconds = time.perf_counter() - t_epoch
        record = {
            "epoch": epoch,
            "step": step,
            "lam": lam,
            "phase": curriculum_phase(lam),
            "lr": lr,
            **dict(zip([k for k in LOSS_KEYS if k in sums], means)),
            "images_per_s": done * global_batch / seconds,
            "seconds": seconds,
        }
        history.append(record)
        last = epoch + 1 == cfg.epochs
        sums = {}
        if probe:
            probe.save(probe_path(out, epoch) if master else None, info.distributed)
        if (epoch + 1) % cfg.save_every == 0 or last:
            last_ckpt = save(epoch + 1, 0) or last_ckpt
        if master:
            log.log({"type": "epoch", **record}, step, prefix="epoch")
            if last or (cfg.vis_every and (epoch + 1) % cfg.vis_every == 0):
                mask_picture(model, vis_images, data.mean, data.std).save(out / "vis" / f"masks-{epoch + 1:04d}.png")
                plot_history(history, out / "history.png")
    bar.close()
    log.close()

    # The end: the weights folder, written whole or not at all. A resumed run whose epochs were done but whose
    # export (or final pictures) was lost to a crash gets them now.
    exported = None
    if master and start_epoch == cfg.epochs and not start_step:
        final_vis = out / "vis" / f"masks-{cfg.epochs:04d}.png"
        if not final_vis.is_file():
            mask_picture(model, vis_images, data.mean, data.std).save(final_vis)
        if not (out / "history.png").is_file() and history:
            plot_history(history, out / "history.png")
    if master and cfg.export and (start_epoch < cfg.epochs or not export_complete(out / "export")):
        exported = export_pretrained(model, out / "export", cfg.to_dict())
        print(f"done: weights in {exported}, checkpoints and metrics in {out}")
    if info.distributed:
        dist.barrier()
    return {"history": history, "checkpoint": last_ckpt, "export": exported, "step": step}
