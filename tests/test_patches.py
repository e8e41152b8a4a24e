import pytest
import torch

import clmae
from clmae.models import patchify, unpatchify


def test_patchify_hand_computed_one_channel():
    img = torch.arange(16.0).reshape(1, 1, 4, 4)
    patches = patchify(img, 2)
    expected = torch.tensor([[0, 1, 4, 5], [2, 3, 6, 7], [8, 9, 12, 13], [10, 11, 14, 15]], dtype=torch.float32)
    torch.testing.assert_close(patches[0], expected)


def test_patchify_pixel_order_is_row_col_channel():
    # One 2x2 patch with 2 channels: channel 0 holds 0..3, channel 1 holds 10..13.
    img = torch.stack([torch.arange(4.0), torch.arange(4.0) + 10]).reshape(1, 2, 2, 2)
    assert patchify(img, 2)[0, 0].tolist() == [0, 10, 1, 11, 2, 12, 3, 13]


def test_unpatchify_inverts_patchify():
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(unpatchify(patchify(x, 4), 4, 3), x, rtol=0, atol=0)


def test_patch_order_matches_timm_patch_embedding():
    # timm's convolutional patch embedding equals a linear map of our patches with the kernel flattened (p, q, c).
    model = clmae.create_model("vit_tiny_patch4_32", embed_dim=24, depth=1, num_heads=2)
    x = torch.randn(2, 3, 32, 32)
    w = model.patch_embed.proj.weight  # [D, C, p, p]
    linear = patchify(x, 4) @ w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).T + model.patch_embed.proj.bias
    torch.testing.assert_close(model.patch_embed(x), linear, atol=1e-5, rtol=1e-5)


def test_bad_sizes():
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.zeros(1, 1, 10, 10), 4)
    with pytest.raises(ValueError, match="cannot unpatchify"):
        unpatchify(torch.zeros(1, 5, 16), 4, 1)
