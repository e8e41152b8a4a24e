"""The CL-MAE masking module: a small transformer that scores which patches to keep."""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ._init import init_linear_and_norm


class MaskingModule(nn.Module):
    """Keep-scores for the patch tokens of a (CL-)MAE, learned adversarially/cooperatively with it.

    It reads the MAE's own patch tokens (shared stem, no patch embedding of its own), prepends a learnable CLS
    token (its position embedding is zero, so none is added), runs ``depth`` pre-norm transformer blocks and maps
    the CLS output through LayerNorm -> Linear(D -> L) -> sigmoid to one score per patch (large = keep).

    Args:
        num_patches: L, patches per image.
        embed_dim: D, the encoder width.
        depth: transformer blocks (reference: 5).
        num_heads: attention heads (reference: 4).
        mlp_ratio: MLP hidden width / D (reference: 4).
        norm_eps: LayerNorm epsilon (reference: PyTorch's default 1e-5, unlike the encoder's 1e-6).
    """

    def __init__(
        self,
        num_patches: int,
        embed_dim: int,
        depth: int = 5,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"masker width {embed_dim} is not divisible by masker_num_heads={num_heads}")
        self.num_patches = num_patches
        self.embed_dim = embed_dim
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.blocks = nn.Sequential(
            *[Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)]
        )
        # Named as in the reference checkpoints (masking_net.mlp_head.{0,1}) so conversion is a prefix rename.
        self.mlp_head = nn.Sequential(norm_layer(embed_dim), nn.Linear(embed_dim, num_patches))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Reference initialisation: CLS ~ N(0, 0.02^2); Linear xavier-uniform, zero bias; LayerNorm (1, 0)."""
        nn.init.normal_(self.cls_token, std=0.02)
        init_linear_and_norm(self)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Score patches.

        Args:
            tokens: patch tokens with positions ``[N, L, D]``.

        Returns:
            keep-scores ``[N, L]`` in (0, 1), float32.
        """
        x = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1).to(tokens.dtype), tokens], dim=1)
        x = self.blocks(x)
        return torch.sigmoid(self.mlp_head(x[:, 0]).float())
