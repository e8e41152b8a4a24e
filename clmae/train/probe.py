"""The masks a run actually trained with: the MAE step's mask of a fixed set of images, recorded every epoch.

CL-MAE's MAE step hides the top-K patches of its masking module's scores, a deterministic function of the image
(and its augmentation); MAE draws a fresh random mask every time. How many different masks an image receives over a
run, and which patch positions are ever shown, is what separates them. ``clmae train mask_probe=N`` records, for the
data set's first N images, the mask each received in each epoch (``OUT/masks/masks-EEEE.safetensors``: ``mask``
``[N, L]`` uint8, 1 = hidden, and ``seen`` ``[N]``, how often the image was read in that epoch, 0 or 1 unless
``epoch_size`` repeats it; an image not seen has an all-zero row). :func:`probe_statistics` summarises them.

Recording costs no host synchronisation: masks are scattered into a device buffer, summed over processes and written
once per epoch. A run resumed inside an epoch does not have the masks of the images read before the checkpoint;
those images count as not seen in that epoch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes

from .._atomic import write_file
from .metrics import mask_statistics


class MaskProbe:
    """Device buffers of the masks of images ``0 .. count-1`` in the current epoch.

    Args:
        count: images probed (the data set's first ``count``).
        num_patches: patches per image ``L``.
        device: the training device.
    """

    def __init__(self, count: int, num_patches: int, device: torch.device) -> None:
        self.count = count
        # one spare row receives every image outside the probe, so recording needs no selection (no host sync)
        self.mask = torch.zeros(count + 1, num_patches, dtype=torch.int32, device=device)
        self.seen = torch.zeros(count + 1, dtype=torch.int32, device=device)

    def reset(self) -> None:
        """Forget the epoch's masks."""
        self.mask.zero_()
        self.seen.zero_()

    def record(self, index: torch.Tensor, mask: torch.Tensor) -> None:
        """Note the masks ``[B, L]`` (1 = hidden) of images ``index`` ``[B]``."""
        index = index.to(self.mask.device)
        row = torch.where(index < self.count, index, torch.full_like(index, self.count))
        self.mask.index_copy_(0, row, mask.to(torch.int32))
        self.seen.index_add_(0, row, torch.ones_like(row, dtype=torch.int32))

    def save(self, path: str | os.PathLike, distributed: bool = False) -> None:
        """Sum over processes (each image is read by one) and write ``path`` (every process must call this; rank 0
        writes when ``path`` is given, the others pass ``None``-like paths)."""
        mask, seen = self.mask[: self.count].clone(), self.seen[: self.count].clone()
        if distributed:
            dist.all_reduce(mask)
            dist.all_reduce(seen)
        if path:
            state = {"mask": mask.clamp(max=1).to(torch.uint8).cpu(), "seen": seen.cpu()}
            write_file(path, safetensors_bytes(state), what="mask probe")


def probe_path(out: str | os.PathLike, epoch: int) -> Path:
    """``OUT/masks/masks-EEEE.safetensors`` of epoch ``epoch`` (0-based; named by epochs done, as checkpoints)."""
    return Path(out) / "masks" / f"masks-{epoch + 1:04d}.safetensors"


def read_probe(out: str | os.PathLike) -> dict[int, dict[str, torch.Tensor]]:
    """Every recorded epoch of a run: ``{epochs done: {"mask": [N, L] uint8, "seen": [N] int32}}``."""
    return {
        int(p.stem.split("-")[1]): load_file(str(p)) for p in sorted((Path(out) / "masks").glob("masks-*.safetensors"))
    }


def _distinct(rows: torch.Tensor) -> int:
    return int(torch.unique(rows, dim=0).shape[0]) if len(rows) else 0


def probe_statistics(out: str | os.PathLike, mask_ratio: float) -> dict[str, Any]:
    """How varied the recorded masks are, per epoch and over the run.

    Returns:
        ``epochs``: per recorded epoch, ``distinct_masks`` (distinct masks among the probed images seen),
        ``keep_min`` / ``keep_max`` (lowest and highest per-position keep frequency), ``never_kept`` (positions kept
        in no image), ``position_bias`` and ``mask_diversity`` (as the training log's, over the probed images).
        ``run``: ``distinct_per_image`` (mean, min, max over images of the number of distinct masks each received
        over all recorded epochs) and ``epochs_per_image`` (mean epochs in which an image was seen), and the same
        for the last quarter of the epochs (``last_quarter_distinct_per_image``).
    """
    records = read_probe(out)
    if not records:
        raise FileNotFoundError(f"{out} has no masks/masks-*.safetensors; train with mask_probe=N to record them")
    per_epoch = []
    for epoch, r in records.items():
        seen = r["seen"] > 0
        m = r["mask"][seen]
        row: dict[str, Any] = {"epoch": epoch, "images": int(seen.sum())}
        if len(m):
            keep = 1.0 - m.float().mean(0)
            row.update(
                distinct_masks=_distinct(m),
                keep_min=float(keep.min()),
                keep_max=float(keep.max()),
                never_kept=int((keep == 0).sum()),
            )
            row.update({k: float(v) for k, v in mask_statistics(m, mask_ratio).items()})
        per_epoch.append(row)

    def per_image(epochs: list[int]) -> dict[str, float]:
        masks = torch.stack([records[e]["mask"] for e in epochs], 1)  # [N, E, L]
        seen = torch.stack([records[e]["seen"] > 0 for e in epochs], 1)  # [N, E]
        counts = [_distinct(masks[i][seen[i]]) for i in range(masks.shape[0]) if seen[i].any()]
        if not counts:
            return {}
        return {
            "mean": sum(counts) / len(counts),
            "min": min(counts),
            "max": max(counts),
            "epochs_seen_mean": float(seen.sum(1)[seen.any(1)].float().mean()),
        }

    epochs = sorted(records)
    last = epochs[-max(1, len(epochs) // 4) :]
    return {
        "epochs": per_epoch,
        "run": {
            "recorded_epochs": len(epochs),
            "distinct_per_image": per_image(epochs),
            "last_quarter_distinct_per_image": per_image(last),
        },
    }
