"""MAE's lightweight decoder: latent tokens (+ mask tokens) -> pixels of every patch."""

from __future__ import annotations

from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from ._init import init_linear_and_norm
from .pos_embed import sincos_2d


class MAEDecoder(nn.Module):
    """The MAE decoder (He et al., 2022; facebookresearch/mae ``models_mae.py``).

    Args:
        num_patches: L (a square number).
        embed_dim: encoder width D.
        decoder_embed_dim: decoder width Dd.
        depth: decoder blocks.
        num_heads: decoder attention heads.
        patch_size: p.
        in_chans: C.
        mlp_ratio: MLP hidden width / Dd.
        norm_eps: LayerNorm epsilon (MAE: 1e-6).
    """

    def __init__(
        self,
        num_patches: int,
        embed_dim: int,
        decoder_embed_dim: int = 512,
        depth: int = 8,
        num_heads: int = 16,
        patch_size: int = 16,
        in_chans: int = 3,
        mlp_ratio: float = 4.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if decoder_embed_dim % num_heads:
            raise ValueError(f"decoder_embed_dim={decoder_embed_dim} is not divisible by decoder_num_heads={num_heads}")
        grid = round(num_patches**0.5)
        if grid * grid != num_patches:
            raise ValueError(f"the decoder needs a square patch grid, got {num_patches} patches")
        norm_layer = partial(nn.LayerNorm, eps=norm_eps)
        self.num_patches = num_patches
        self.embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        # Fixed sin-cos positions, stored like MAE's (a parameter that never trains) so checkpoints carry it.
        self.pos_embed = nn.Parameter(sincos_2d(decoder_embed_dim, grid, cls_token=True)[None], requires_grad=False)
        self.blocks = nn.Sequential(
            *[
                Block(decoder_embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer)
                for _ in range(depth)
            ]
        )
        self.norm = norm_layer(decoder_embed_dim)
        self.pred = nn.Linear(decoder_embed_dim, patch_size * patch_size * in_chans)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """MAE's initialisation (``models_mae.initialize_weights``): Linear xavier-uniform with zero bias, LayerNorm
        (1, 0), mask token ~ N(0, 0.02^2); the positions stay sin-cos."""
        init_linear_and_norm(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, latent: torch.Tensor, ids_restore: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the pixels of every patch.

        Args:
            latent: encoder output ``[N, 1 + K, D]`` (CLS first).
            ids_restore: ``[N, L]`` permutation from :func:`~clmae.models.masking.topk_masking`; with it, the
                ``L - K`` missing tokens are filled with the mask token and unshuffled to patch order. ``None``
                means ``latent`` already holds all L patch tokens in patch order (CL-MAE's soft-mask step).

        Returns:
            ``[N, L, p*p*C]`` predicted patches.
        """
        x = self.embed(latent)  # [N, 1 + K, Dd]
        if ids_restore is not None:
            n, length = ids_restore.shape
            mask_tokens = self.mask_token.to(x.dtype).expand(n, length + 1 - x.shape[1], -1)
            x_ = torch.cat([x[:, 1:], mask_tokens], dim=1)  # [N, L, Dd], kept tokens first
            x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2]))  # unshuffle
            x = torch.cat([x[:, :1], x_], dim=1)
        x = x + self.pos_embed
        x = self.blocks(x)
        x = self.norm(x)
        return self.pred(x)[:, 1:]  # drop CLS
