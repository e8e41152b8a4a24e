import pytest
import torch

from clmae.models import num_keep, random_masking, topk_masking


def test_num_keep_is_int_of_l_times_keep_fraction():
    assert num_keep(196, 0.75) == 49
    assert num_keep(49, 0.75) == 12  # int(12.25)
    assert num_keep(256, 0.75) == 64
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\)"):
            num_keep(49, bad)
    with pytest.raises(ValueError, match="keeps 0 of 49"):
        num_keep(49, 0.99)


def test_topk_keeps_exactly_the_k_highest_scores():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 49, 8, generator=g)
    scores = torch.rand(5, 49, generator=g)
    x_keep, mask, ids_restore = topk_masking(x, scores, 12)
    assert x_keep.shape == (5, 12, 8)
    assert mask.sum(1).tolist() == [37.0] * 5  # L - K removed per image
    for n in range(5):
        top = set(torch.topk(scores[n], 12).indices.tolist())
        assert set(torch.nonzero(mask[n] == 0).flatten().tolist()) == top
        # the kept tokens are those patches' tokens, in descending score order
        order = torch.argsort(scores[n], descending=True)[:12]
        torch.testing.assert_close(x_keep[n], x[n, order])
    # ids_restore puts [kept, removed] back into patch order: visible patches land where mask == 0.
    padded = torch.cat([x_keep, torch.zeros(5, 37, 8)], dim=1)
    restored = torch.gather(padded, 1, ids_restore.unsqueeze(-1).expand(-1, -1, 8))
    torch.testing.assert_close(restored, x * (1 - mask).unsqueeze(-1))


def test_topk_ties_are_deterministic_and_carry_no_gradient():
    x = torch.randn(2, 6, 4)
    scores = torch.full((2, 6), 0.5, requires_grad=True)
    _, mask, _ = topk_masking(x, scores, 2)
    assert mask.tolist() == [[0, 0, 1, 1, 1, 1]] * 2  # stable: the first patches win ties
    assert not mask.requires_grad


def test_random_masking_is_seedable_and_uniform():
    x = torch.randn(4, 49, 3)
    a = random_masking(x, 12, torch.Generator().manual_seed(3))[1]
    b = random_masking(x, 12, torch.Generator().manual_seed(3))[1]
    c = random_masking(x, 12, torch.Generator().manual_seed(4))[1]
    assert torch.equal(a, b) and not torch.equal(a, c)
    # Every patch is kept with probability K / L = 12 / 49: over 2,000 x 49 draws the per-patch rate is within
    # 5 standard deviations (sd = sqrt(p (1 - p) / 2000) ~ 0.0096) of it.
    keep_rate = 1 - random_masking(torch.zeros(2000, 49, 1), 12, torch.Generator().manual_seed(0))[1].mean(0)
    assert (keep_rate - 12 / 49).abs().max() < 5 * 0.0096
