import math

import pytest
import torch

from clmae.models import losses


def test_gaussian_hand_computed_including_its_factor():
    # factor = 0.12 * sqrt(2 pi) = 0.3007954..., NOT its inverse (3.3245...)
    factor = 0.12 * math.sqrt(2 * math.pi)
    assert factor == pytest.approx(0.3007954, abs=1e-7)
    m = torch.tensor([[0.5, 0.62], [0.38, 1.0]])
    # m = 0.5 -> exp(0) = 1; m = 0.5 +- 0.12 -> exp(-1/2); m = 1.0 -> exp(-0.25 / 0.0288)
    expected = factor * (1 + 2 * math.exp(-0.5) + math.exp(-0.25 / 0.0288)) / 4
    assert losses.gaussian_loss(m).item() == pytest.approx(expected, rel=1e-6)
    assert losses.gaussian_loss(m, weight=3.0).item() == pytest.approx(3 * expected, rel=1e-6)


def test_kl_hand_computed_with_mean_times_256():
    # Row means: p = 0.5 and p = 0.25 (= target, KL 0).
    m = torch.tensor([[0.25, 0.75], [0.0, 0.5]])
    kl_half = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # 0.1438410...
    assert kl_half == pytest.approx(0.143841, abs=1e-6)
    expected = 0.1 * 256 * (kl_half + 0.0) / 2
    assert losses.kl_loss(m, keep_target=0.25).item() == pytest.approx(expected, rel=1e-6)


def test_kl_equals_reference_batch_sum_at_256():
    m = torch.rand(256, 49, generator=torch.Generator().manual_seed(0))
    p = m.mean(1).double()
    reference_sum = 0.1 * (p * torch.log(p / 0.25) + (1 - p) * torch.log((1 - p) / 0.75)).sum()
    assert losses.kl_loss(m, keep_target=0.25).item() == pytest.approx(reference_sum.item(), rel=1e-5)
    # and at another batch size it is the mean, not the sum: duplicating the batch leaves it unchanged
    assert losses.kl_loss(m.repeat(2, 1), 0.25).item() == pytest.approx(losses.kl_loss(m, 0.25).item(), rel=1e-6)


def test_kl_rejects_bad_target():
    with pytest.raises(ValueError, match="keep_target"):
        losses.kl_loss(torch.rand(2, 4), keep_target=1.0)


def test_diversity_hand_computed():
    m = torch.tensor([[0.0, 0.0], [0.3, 0.4]])  # distance 0.5
    assert losses.diversity_loss(m).item() == pytest.approx(2.0 * math.exp(-0.1 * 0.5), rel=1e-6)


def test_diversity_matches_double_loop():
    m = torch.rand(7, 49, generator=torch.Generator().manual_seed(1))
    terms = [math.exp(-0.1 * torch.linalg.vector_norm(m[i] - m[j]).item()) for i in range(7) for j in range(i + 1, 7)]
    assert len(terms) == 21
    assert losses.diversity_loss(m).item() == pytest.approx(2.0 * sum(terms) / len(terms), rel=1e-5)


def test_diversity_single_image_and_identical_rows():
    one = torch.rand(1, 10, requires_grad=True)
    assert losses.diversity_loss(one).item() == 0.0
    same = torch.full((3, 10), 0.3, requires_grad=True)
    losses.diversity_loss(same).backward()  # zero distances: the gradient must stay finite
    assert torch.isfinite(same.grad).all()


def test_soft_reconstruction_hand_computed():
    errors = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    m = torch.tensor([[0.5, 1.0], [0.0, 0.75]])  # hidden weights 0.5, 0, 1, 0.25
    assert losses.soft_reconstruction_loss(errors, m).item() == pytest.approx(4.5 / 1.75, rel=1e-6)


def test_masked_mse_and_patch_errors_hand_computed():
    pred = torch.tensor([[[1.0, 3.0], [0.0, 0.0], [2.0, 2.0]]])
    target = torch.tensor([[[0.0, 1.0], [5.0, 5.0], [2.0, 0.0]]])
    errors = losses.patch_errors(pred, target)
    assert errors.tolist() == [[2.5, 25.0, 2.0]]
    assert losses.masked_mse(errors, torch.tensor([[1.0, 0.0, 1.0]])).item() == pytest.approx(2.25)


def test_norm_pix_target():
    patches = torch.tensor([[[1.0, 2.0, 3.0]]])  # mean 2, unbiased variance 1
    target = losses.patch_targets(patches, norm_pix_loss=True)
    torch.testing.assert_close(target, torch.tensor([[[-1.0, 0.0, 1.0]]]) / math.sqrt(1 + 1e-6))
    assert torch.equal(losses.patch_targets(patches, norm_pix_loss=False), patches)


def test_kl_gradient_stays_finite_when_scores_saturate():
    m = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]], requires_grad=True)
    loss = losses.kl_loss(m, keep_target=0.25)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(m.grad).all()
    # at p = 0: KL = log(1 / 0.75); at p = 1: KL = log(1 / 0.25) (up to the 1e-6 clamp)
    expected = 0.1 * 256 * (math.log(1 / 0.75) + math.log(1 / 0.25)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-4)
