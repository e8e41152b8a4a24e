"""The comparison call's calibration: time the trainer's update eagerly and as a CUDA graph, and choose the path.

:func:`time_updates` times the trainer's loop body on random uint8 images held on the device (augmentation on the
device, the mask probe) either as :func:`clmae.train.train_step` (eager) or as :class:`clmae.train.graph.StaticUpdate`
(captured and replayed on CUDA, ``cuda_graph=true``), and records the losses of the first updates. Both start from the
same weights and read the same images, so on one device the two paths' first losses agree up to bf16 rounding.

:func:`choose_path` is the decision, a pure function of those records: the graphed path only when it was measured,
ran, agrees with eager on the first losses (within ``BF16_RTOL``) and is faster; otherwise eager, with one line why.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

ARCH = "vit_tiny_patch4_28"
BF16_RTOL = 2e-2  # bf16 keeps 8 significant bits (relative step 2^-8 = 0.4 %); a few updates of drift on top
LOSSES = 3  # updates whose losses are compared


def time_updates(
    method: str,
    batch: int,
    device: str,
    steps: int,
    warmup: int,
    *,
    graph: bool = False,
    probe: int = 0,
    arch: str = ARCH,
    model_kwargs: dict | None = None,
) -> dict[str, Any]:
    """Time ``steps`` updates of the trainer's loop body (after ``warmup`` ones) on device-held random images.

    Args:
        method: ``"clmae"`` or ``"mae"``.
        batch: images per update.
        device: where to train.
        steps: timed updates.
        warmup: untimed updates first (the losses of the first :data:`LOSSES` of them are recorded).
        graph: the static-buffer update (:class:`clmae.train.graph.StaticUpdate`, a CUDA graph on CUDA) instead of
            :func:`clmae.train.train_step`.
        probe: images whose masks are recorded (the trainer's ``mask_probe``).
        arch: the architecture.
        model_kwargs: its overrides (tiny models in tests).

    Returns:
        ``images_per_s``, ``seconds``, ``losses`` (per recorded update: ``[mae_loss]`` or ``[mae_loss, masker_loss]``),
        and for ``graph=True`` whether updates were ``graphed`` and the ``error`` line of a failed capture.
    """
    import torch

    from clmae.data import DeviceImages, GlobalBatchSampler, PretrainingData
    from clmae.models import create_pretraining_model
    from clmae.train import build_optimizers, train_step
    from clmae.train.batches import EpochBatches
    from clmae.train.graph import StaticUpdate
    from clmae.train.probe import MaskProbe

    torch.manual_seed(0)
    dev = torch.device(device)
    model = create_pretraining_model(arch, method, **(model_kwargs or {})).to(dev).train()
    opts = build_optimizers(model, 1e-4)
    images = torch.randint(0, 256, (max(4 * batch, 4096), 1, 28, 28), dtype=torch.uint8)
    held = DeviceImages(images, (0.286,), (0.353,), 28, augment=True)
    data = PretrainingData(held, held, held.mean, held.std, "random uint8 images")
    batches = EpochBatches(data, GlobalBatchSampler(held, batch, 1, 1, 0), dev, 28, 1, with_indices=bool(probe))
    recorder = MaskProbe(probe, model.num_patches, dev) if probe else None
    errors: list[str] = []
    update = StaticUpdate(model, opts, held, batch, 1, batches.steps_per_epoch, log=errors.append) if graph else None
    losses, done, epoch, start = [], 0, 0, time.perf_counter()
    while done < warmup + steps:  # as the trainer: each epoch's indices, seeds and crop boxes made once, on the device
        updates = update.epoch(batches.epoch_plan(epoch), 1.0) if update else batches.epoch(epoch)
        for s, (micro, indices) in enumerate(updates):
            if done == warmup:
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            lam = 1.0 - 2.0 * (done % 2)
            seeds = batches.mask_seeds(epoch, s) if model.masker is None else None
            if update:
                update.lam.fill_(lam)
                stats = update(1e-4, seeds)
            else:
                gens = None if seeds is None else batches.mask_generators(epoch, s)
                stats = train_step(model, micro, lam, *opts, generator=gens, return_masks=True)
            if recorder:
                for index, mask in zip(indices, stats["masks"]):
                    recorder.record(index, mask)
            if done < min(warmup, LOSSES):  # during the warm-up: the host reads them outside the timed updates
                losses.append([float(stats[k]) for k in ("mae_loss", "masker_loss") if k in stats])
            done += 1
            if done == warmup + steps:
                break
        epoch += 1
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    record = {"images_per_s": steps * batch / seconds, "seconds": seconds, "losses": losses}
    if graph:
        record["graphed"] = update.graphed
        record["error"] = None if update.graphed else (errors[0] if errors else f"no CUDA graph on {dev.type}")
    return record


def first_difference(eager: Sequence[Sequence[float]], graph: Sequence[Sequence[float]], rtol: float) -> str | None:
    """Where two runs' first losses differ by more than ``rtol`` (relative), as a phrase; ``None`` if they agree."""
    if len(eager) != len(graph) or not eager:
        return f"{len(graph)} graphed losses recorded against {len(eager)} eager ones"
    for k, (a, b) in enumerate(zip(eager, graph)):
        for x, y in zip(a, b):
            if not abs(x - y) <= rtol * max(abs(x), 1e-12):  # also catches NaN
                return f"update {k + 1}: eager {x:.6g}, graphed {y:.6g} (beyond {rtol:g} relative)"
    return None


def choose_path(children: Sequence[dict[str, Any]], rtol: float = BF16_RTOL) -> dict[str, Any]:
    """The update path of the planned runs, from the calibration processes' records (all the runs at once).

    Each record holds the eager ``images_per_s`` and ``losses`` and, under ``graph``, those of the graphed update and
    its ``error`` (``None`` if it ran), or no ``graph`` if it was not measured. The graphed path is chosen only when
    every process ran it, its first losses equal eager's within ``rtol`` in every process, and its slowest process
    is faster than eager's slowest.

    Returns:
        ``path`` (``"graph"`` or ``"eager"``), ``why`` (one line), ``images_per_s`` (per run, of the chosen path),
        ``eager_images_per_s`` and ``graph_images_per_s`` (``None`` when not measured).
    """
    if not children:
        raise ValueError("choose_path needs at least one calibration record")
    eager = min(c["images_per_s"] for c in children)
    graphs = [c.get("graph") for c in children]
    graph_rate, why = None, None
    if any(g is None for g in graphs):
        why = "eager: graphed updates were not measured"
    elif any(g.get("error") for g in graphs):
        why = f"eager: the graphed update failed ({next(g['error'] for g in graphs if g.get('error'))})"
    else:
        graph_rate = min(g["images_per_s"] for g in graphs)
        diffs = [first_difference(c["losses"], c["graph"]["losses"], rtol) for c in children]
        diff = next((d for d in diffs if d), None)
        if diff:
            why = f"eager: graphed losses differ from eager ones at {diff}"
        elif graph_rate <= eager:
            why = f"eager: graphed {graph_rate:.0f} images/s per run is not faster than eager {eager:.0f}"
    if why is None:
        return {
            "path": "graph",
            "why": f"graph: {graph_rate:.0f} images/s per run against eager {eager:.0f}, the first {LOSSES} "
            f"losses equal within {rtol:g}",
            "images_per_s": graph_rate,
            "eager_images_per_s": eager,
            "graph_images_per_s": graph_rate,
        }
    return {"path": "eager", "why": why, "images_per_s": eager, "eager_images_per_s": eager,
            "graph_images_per_s": graph_rate}  # fmt: skip
