"""Patch masking: keep the top-K scored tokens (CL-MAE) or K uniformly random ones (MAE).

Convention as MAE: ``mask[n, l] = 1`` means patch l of image n is removed, ``0`` means it is visible.
"""

from __future__ import annotations

import torch


def check_mask_ratio(mask_ratio: float) -> float:
    """``mask_ratio`` if it is a number in (0, 1); a ``ValueError`` otherwise."""
    if isinstance(mask_ratio, bool) or not isinstance(mask_ratio, (int, float)) or not 0.0 < mask_ratio < 1.0:
        raise ValueError(f"mask_ratio must be in (0, 1), got {mask_ratio!r}")
    return float(mask_ratio)


def num_keep(num_patches: int, mask_ratio: float) -> int:
    """K = int(L * (1 - mask_ratio)), the number of visible patches (MAE's ``len_keep``)."""
    check_mask_ratio(mask_ratio)
    keep = int(num_patches * (1 - mask_ratio))
    if not 1 <= keep < num_patches:
        raise ValueError(
            f"mask_ratio {mask_ratio} keeps {keep} of {num_patches} patches; choose a ratio that keeps at least one "
            "patch and hides at least one"
        )
    return keep


def topk_masking(
    x: torch.Tensor, scores: torch.Tensor, len_keep: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep the ``len_keep`` highest-scoring tokens of each sequence; deterministic, no gradient through the choice.

    Args:
        x: tokens ``[N, L, D]``.
        scores: keep-scores ``[N, L]`` (large = keep).
        len_keep: K.

    Returns:
        ``x_keep [N, K, D]`` (in descending score order), ``mask [N, L]`` (0 keep, 1 remove, dtype of ``x``), and
        ``ids_restore [N, L]``, the permutation that puts ``cat(x_keep, removed)`` back in patch order.
    """
    n, length, d = x.shape
    # Sort once, as MAE's random_masking does: the first K of ids_shuffle are kept. A stable sort makes ties
    # deterministic. The indices are integers, so no gradient reaches the scores from here.
    ids_shuffle = torch.argsort(scores.detach(), dim=1, descending=True, stable=True)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    x_keep = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(n, length, device=x.device, dtype=x.dtype)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)  # unshuffle to patch order
    return x_keep, mask, ids_restore


def random_masking(
    x: torch.Tensor, len_keep: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MAE's uniform random masking: keep K patches chosen uniformly at random per image.

    Args:
        x: tokens ``[N, L, D]``.
        len_keep: K.
        generator: optional generator on ``x.device`` for reproducible masks.

    Returns:
        As :func:`topk_masking`.
    """
    noise = torch.rand(x.shape[:2], device=x.device, generator=generator)  # [N, L] in [0, 1)
    return topk_masking(x, noise, len_keep)
