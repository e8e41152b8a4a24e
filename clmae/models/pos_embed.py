"""Fixed 2-D sine-cosine position embeddings, as in MAE (facebookresearch/mae, ``util/pos_embed.py``)."""

from __future__ import annotations

import torch


def sincos_1d(embed_dim: int, pos: torch.Tensor) -> torch.Tensor:
    """1-D sine-cosine embedding of positions.

    Args:
        embed_dim: output width D (even).
        pos: positions, any shape; flattened to ``[M]``.

    Returns:
        ``[M, D]``: ``[sin(pos * w), cos(pos * w)]`` with ``w_d = 1 / 10000^(d / (D/2))``.
    """
    if embed_dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {embed_dim}")
    omega = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / 10000**omega  # [D/2]
    out = pos.reshape(-1).to(torch.float64)[:, None] * omega[None, :]  # [M, D/2], outer product
    return torch.cat([torch.sin(out), torch.cos(out)], dim=1)


def sincos_2d(embed_dim: int, grid_size: int, cls_token: bool = False) -> torch.Tensor:
    """2-D sine-cosine embedding of a square grid of patches, row-major order.

    The first half of the channels encodes the column (w) index and the second half the row (h) index: MAE builds
    its grid with ``np.meshgrid(grid_w, grid_h)`` ("w goes first") and feeds ``grid[0]`` to the first half.

    Args:
        embed_dim: output width D (divisible by 4).
        grid_size: patches per side.
        cls_token: prepend a row of zeros for the class token.

    Returns:
        ``[grid_size**2 (+1), D]`` in float32.
    """
    if embed_dim % 4:
        raise ValueError(f"2-D sin-cos embedding width must be divisible by 4, got {embed_dim}")
    coords = torch.arange(grid_size, dtype=torch.float64)
    rows, cols = torch.meshgrid(coords, coords, indexing="ij")  # [G, G] each, token t = row * G + col
    emb = torch.cat([sincos_1d(embed_dim // 2, cols), sincos_1d(embed_dim // 2, rows)], dim=1)
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=emb.dtype), emb], dim=0)
    return emb.float()
