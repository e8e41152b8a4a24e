"""What the trainer records: mask statistics, JSON-lines metrics and (when installed) TensorBoard."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import torch


def mask_statistics(
    mask: torch.Tensor, mask_ratio: float, scores: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """How learned masks differ from MAE's random ones, as device tensors (no host sync).

    Args:
        mask: the MAE step's masks ``[N, L]`` (1 = hidden).
        mask_ratio: fraction hidden per image.
        scores: the masking module's keep-scores ``[N, L]`` (CL-MAE only).

    Returns:
        ``position_bias``: ``mean_l |f_l - mask_ratio|``, with ``f_l`` the fraction of images hiding patch ``l``;
        about 0 for random masks (up to sampling noise ~ ``0.8 sqrt(r (1 - r) / N)``), up to
        ``2 r (1 - r)`` when every image hides the same patches.
        ``mask_diversity``: mean Hamming distance between the masks of two images, divided by its expectation for
        two independent random masks (``2 H K / L``, H hidden and K kept); about 1 for random masks, 0 when all
        images get the same mask.
        With ``scores`` also ``score_mean``, ``score_to_keep`` (``mean |m - (1 - mask_ratio)|``: 0 when every score
        equals the keep fraction, i.e. no preference) and ``score_binary`` (``mean |2m - 1|``: 1 for 0/1 scores).
    """
    m = mask.detach().float()
    n, length = m.shape
    stats = {"position_bias": (m.mean(0) - mask_ratio).abs().mean()}
    if n > 1:
        hidden = m.sum(1).mean()
        expected = 2 * hidden * (length - hidden) / length
        stats["mask_diversity"] = torch.pdist(m, p=1).mean() / expected
    if scores is not None:
        s = scores.detach().float()
        stats["score_mean"] = s.mean()
        stats["score_to_keep"] = (s - (1.0 - mask_ratio)).abs().mean()
        stats["score_binary"] = (2 * s - 1).abs().mean()
    return stats


class MetricsLog:
    """Appends records to ``OUT/metrics.jsonl`` (one JSON object per line) and to TensorBoard when installed.

    Args:
        out: output folder.
        enabled: write anything at all (rank 0 only).
        tensorboard: also write TensorBoard events to ``OUT/tensorboard`` if ``tensorboard`` is installed.
    """

    def __init__(self, out: str | os.PathLike, enabled: bool = True, tensorboard: bool = True) -> None:
        self.path = Path(out) / "metrics.jsonl"
        self.enabled, self.writer = enabled, None
        self.first: dict[str, Any] = {}  # added to the next record written (the run's preprocessing)
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # optional: pip install tensorboard
                pass
            else:
                self.writer = SummaryWriter(str(Path(out) / "tensorboard"))

    def log(self, record: dict[str, Any], step: int, prefix: str = "train") -> None:
        """Write one record (numbers and strings); numbers also go to TensorBoard as ``prefix/key``. The first record
        written also gets the keys of :attr:`first` (set by the trainer: the run's preprocessing)."""
        if not self.enabled:
            return
        if self.first:
            record, self.first = {**record, **self.first}, {}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.writer is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self.writer.add_scalar(f"{prefix}/{k}", v, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` file (a truncated last line, from a killed run, is skipped)."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except (ValueError, RecursionError):  # JSONDecodeError, or a damaged line nested too deep
            warnings.warn(f"skipping an incomplete line in {path}", stacklevel=2)
    return records
