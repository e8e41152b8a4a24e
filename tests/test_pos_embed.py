import math

import numpy as np
import pytest
import torch

import clmae
from clmae.models.pos_embed import sincos_2d


def _mae_numpy(embed_dim: int, grid_size: int) -> np.ndarray:
    """MAE's formula (util/pos_embed.py), transcribed in NumPy as an independent reference, with CLS row."""

    def one_d(dim, pos):
        omega = np.arange(dim // 2, dtype=np.float64) / (dim / 2.0)
        omega = 1.0 / 10000**omega
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    grid_h = np.arange(grid_size, dtype=np.float32)
    grid_w = np.arange(grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(grid_w, grid_h), axis=0).reshape([2, 1, grid_size, grid_size])
    emb = np.concatenate([one_d(embed_dim // 2, grid[0]), one_d(embed_dim // 2, grid[1])], axis=1)
    return np.concatenate([np.zeros([1, embed_dim]), emb], axis=0)


def test_hand_computed_small_grid():
    # D = 4: each axis gets 2 channels with a single frequency w = 1: [sin(col), cos(col), sin(row), cos(row)].
    emb = sincos_2d(4, 2)
    for token, (row, col) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        expected = [math.sin(col), math.cos(col), math.sin(row), math.cos(row)]
        assert emb[token].tolist() == pytest.approx(expected, abs=1e-7)


@pytest.mark.parametrize(("dim", "grid"), [(32, 7), (192, 7), (768, 14)])
def test_matches_mae_formula(dim, grid):
    ours = sincos_2d(dim, grid, cls_token=True).numpy()
    np.testing.assert_allclose(ours, _mae_numpy(dim, grid), atol=1e-6)


@pytest.mark.slow
def test_models_use_fixed_sincos_positions():
    model = clmae.create_model("vit_tiny_patch4_28")
    ref = torch.from_numpy(_mae_numpy(192, 7)).float()[None]
    torch.testing.assert_close(model.pos_embed.detach(), ref, atol=1e-6, rtol=0)
    pre = clmae.create_pretraining_model("vit_tiny_patch4_28", decoder_embed_dim=64)
    torch.testing.assert_close(pre.encoder.pos_embed.detach(), ref, atol=1e-6, rtol=0)
    dec_ref = torch.from_numpy(_mae_numpy(64, 7)).float()[None]
    torch.testing.assert_close(pre.decoder.pos_embed.detach(), dec_ref, atol=1e-6, rtol=0)
    # Fixed during pretraining: no gradient, so no optimizer ever sees them.
    assert not pre.encoder.pos_embed.requires_grad and not pre.decoder.pos_embed.requires_grad


def test_width_must_divide_by_four():
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_2d(30, 4)
