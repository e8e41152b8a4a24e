import pytest
import torch
from conftest import tiny_pretrainer

import clmae
from clmae.models import random_masking
from clmae.train.metrics import mask_statistics

pytestmark = pytest.mark.usefixtures("one_thread")


def test_accumulation_equals_one_big_batch_for_the_mae_and_per_micro_batch_for_the_masker(images):
    big, acc, ref = tiny_pretrainer(seed=4), tiny_pretrainer(seed=4), tiny_pretrainer(seed=4)
    opts_big, opts_acc = clmae.build_optimizers(big, 1e-3), clmae.build_optimizers(acc, 1e-3)
    halves = [images[:3], images[3:]]
    clmae.train_step(big, images, 0.5, *opts_big)
    stats = clmae.train_step(acc, halves, 0.5, *opts_acc)

    # MAE: the masked MSE of two equal halves averages to that of the whole batch (same top-K masks per image).
    # Gradients are compared (they stay on the parameters after the step): AdamW's first update is about
    # lr * sign(grad), which turns rounding noise in zero-gradient entries (the attention key biases) into +-lr.
    for part in ("encoder", "decoder"):
        for (k, a), b in zip(getattr(big, part).named_parameters(), getattr(acc, part).parameters()):
            if a.grad is not None:
                torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6, msg=k)

    # Masker: by hand, the mean of the two micro-batch losses through the updated encoder.
    ref.encoder.load_state_dict(acc.encoder.state_dict())
    ref.decoder.load_state_dict(acc.decoder.state_dict())
    losses = [ref.forward_masker(x, 0.5)["loss"] for x in halves]
    expected = (losses[0] + losses[1]) / 2
    torch.testing.assert_close(stats["masker_loss"], expected.detach())
    expected.backward()
    for (k, a), b in zip(ref.masker.named_parameters(), acc.masker.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-6, msg=k)


def test_return_masks_and_errors(images):
    model = tiny_pretrainer()
    opts = clmae.build_optimizers(model, 1e-3)
    stats = clmae.train_step(model, [images[:2], images[2:]], 1.0, *opts, return_masks=True)
    assert stats["mask"].shape == (4, 49) and stats["scores"].shape == (4, 49)
    assert stats["mask"].sum(1).tolist() == [49 - 12] * 4
    mae = tiny_pretrainer("mae")
    opt, _ = clmae.build_optimizers(mae, 1e-3)
    with pytest.raises(ValueError, match="one per micro-batch"):
        clmae.train_step(mae, [images[:2], images[2:]], 1.0, opt, generator=[torch.Generator()])
    with pytest.raises(ValueError, match="non-empty"):
        clmae.train_step(mae, [], 1.0, opt)


def test_mask_statistics_by_hand():
    same = torch.tensor([[1.0, 1, 1, 0], [1, 1, 1, 0]])  # every image hides the same 3 of 4 patches
    s = mask_statistics(same, 0.75)
    assert s["position_bias"].item() == pytest.approx(2 * 0.75 * 0.25) and s["mask_diversity"].item() == 0
    opposite = torch.tensor([[1.0, 1, 0, 0], [0, 0, 1, 1]])  # Hamming 4; random pairs average 2*2*2/4 = 2
    s = mask_statistics(opposite, 0.5)
    assert s["position_bias"].item() == 0 and s["mask_diversity"].item() == pytest.approx(2.0)
    scores = torch.tensor([[0.25, 1.0, 0.0, 0.5]])
    s = mask_statistics(torch.tensor([[1.0, 0, 1, 1]]), 0.75, scores)
    assert "mask_diversity" not in s  # one image: no pairs
    assert s["score_mean"].item() == pytest.approx(0.4375)
    assert s["score_to_keep"].item() == pytest.approx((0 + 0.75 + 0.25 + 0.25) / 4)
    assert s["score_binary"].item() == pytest.approx((0.5 + 1 + 1 + 0) / 4)


def test_random_masks_look_random():
    x = torch.zeros(2000, 49, 1)
    _, mask, _ = random_masking(x, 12, torch.Generator().manual_seed(0))
    s = mask_statistics(mask, 1 - 12 / 49)
    assert s["position_bias"].item() < 0.03  # sampling noise ~ 0.8 * sqrt(0.19 / 2000) = 0.008
    assert s["mask_diversity"].item() == pytest.approx(1.0, abs=0.02)
