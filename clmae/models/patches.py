"""Images <-> sequences of flattened patches (MAE's ``patchify`` / ``unpatchify``)."""

from __future__ import annotations

import torch


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into flattened patches.

    Args:
        imgs: ``[N, C, H, W]`` with H and W divisible by ``patch_size``.
        patch_size: patch side p.

    Returns:
        ``[N, L, p*p*C]``; patches in row-major order (as timm's patch embedding), pixels ordered (row, col, channel)
        inside a patch, as MAE.
    """
    n, c, h, w = imgs.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"image size {h}x{w} is not divisible by the patch size {p}")
    x = imgs.reshape(n, c, h // p, p, w // p, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(x: torch.Tensor, patch_size: int, channels: int) -> torch.Tensor:
    """Inverse of :func:`patchify` for square images.

    Args:
        x: ``[N, L, p*p*C]`` with L a square number.
        patch_size: patch side p.
        channels: C.

    Returns:
        ``[N, C, H, W]`` with ``H = W = sqrt(L) * p``.
    """
    n, num_patches, _ = x.shape
    p = patch_size
    g = round(num_patches**0.5)
    if g * g != num_patches or x.shape[2] != p * p * channels:
        raise ValueError(f"cannot unpatchify {tuple(x.shape)} with patch size {p} and {channels} channels")
    x = x.reshape(n, g, g, p, p, channels)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(n, channels, g * p, g * p)
