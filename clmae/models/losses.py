"""CL-MAE loss terms as pure tensor functions (method: Madan et al., CL-MAE, WACV 2024).

Every function takes keep-scores ``m [N, L]`` in (0, 1) (large = keep) and/or per-patch errors and returns a scalar.
The ``weight`` arguments carry the reference code's coefficients, so each function returns the term *as it enters
the masking module's loss*. Everything is computed in float32, also under bf16 autocast.
"""

from __future__ import annotations

import math

import torch

# Reference coefficients (authors' released code).
GAUSS_SIGMA = 0.12
GAUSS_WEIGHT = 1.0
KL_WEIGHT = 0.1
KL_BATCH_SCALE = 256
DIV_WEIGHT = 2.0
DIV_SCALE = 0.1


def patch_targets(patches: torch.Tensor, norm_pix_loss: bool = False) -> torch.Tensor:
    """Reconstruction target from patchified images ``[N, L, P]``; per-patch normalised if ``norm_pix_loss`` (MAE)."""
    target = patches.float()
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)  # unbiased, as MAE
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    return target


def patch_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-patch mean squared error ``l[n, l] = mean_pixels (pred - target)^2``: ``[N, L, P] -> [N, L]``."""
    return (pred.float() - target).pow(2).mean(dim=-1)


def masked_mse(errors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """MAE's loss: mean of per-patch errors ``[N, L]`` over the removed patches (``mask == 1``)."""
    mask = mask.float()
    return (errors * mask).sum() / mask.sum()


def soft_reconstruction_loss(errors: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """``L_rec = sum((1 - m) * l) / sum(1 - m)`` over the whole batch: errors weighted by how hidden each patch is."""
    hidden = 1.0 - scores.float()
    return (hidden * errors.float()).sum() / hidden.sum()


def gaussian_loss(scores: torch.Tensor, sigma: float = GAUSS_SIGMA, weight: float = GAUSS_WEIGHT) -> torch.Tensor:
    """``weight * mean(exp(-(m - 0.5)^2 / (2 sigma^2)) * sigma * sqrt(2 pi))``: pushes scores towards 0 or 1.

    The factor is ``sigma * sqrt(2 pi)`` (about 0.3008 for sigma = 0.12), as in the reference code, not the Gaussian
    density's normaliser ``1 / (sigma * sqrt(2 pi))``.
    """
    m = scores.float()
    return weight * (torch.exp(-((m - 0.5) ** 2) / (2 * sigma**2)) * (sigma * math.sqrt(2 * math.pi))).mean()


def kl_loss(
    scores: torch.Tensor, keep_target: float = 0.25, weight: float = KL_WEIGHT, batch_scale: float = KL_BATCH_SCALE
) -> torch.Tensor:
    """Bernoulli KL of each image's soft keep-fraction to the target keep-fraction.

    ``weight * batch_scale * mean_n KL(p_n || t)`` with ``p_n = mean_l m[n, l]`` and
    ``KL(p || t) = p log(p / t) + (1 - p) log((1 - p) / (1 - t))``.

    The reference sums the KL over the per-GPU batch and hard-codes t = 0.25; we take t = 1 - mask_ratio and the
    batch *mean* times ``batch_scale`` = 256, equal to the reference at its per-GPU batch of 256 and independent of
    the batch size otherwise.
    """
    if not 0.0 < keep_target < 1.0:
        raise ValueError(f"keep_target must be in (0, 1), got {keep_target}")
    # Clamped so that the gradient stays finite if every score of an image saturates at 0 or 1.
    p = scores.float().mean(dim=1).clamp(1e-6, 1 - 1e-6)  # [N]
    kl = p * torch.log(p / keep_target) + (1 - p) * torch.log((1 - p) / (1 - keep_target))
    return weight * batch_scale * kl.mean()


def diversity_loss(scores: torch.Tensor, weight: float = DIV_WEIGHT, scale: float = DIV_SCALE) -> torch.Tensor:
    """``weight * mean_{i<j} exp(-scale * ||m_i - m_j||_2)`` over the pairs of images in the batch; 0 if N < 2.

    Rewards masks that differ across images. One ``pdist`` call (vectorised, no Python loop over pairs).
    """
    m = scores.float()
    if m.shape[0] < 2:
        return m.sum() * 0.0  # keeps the graph and device, no host sync
    return weight * torch.exp(-scale * torch.pdist(m, p=2)).mean()
