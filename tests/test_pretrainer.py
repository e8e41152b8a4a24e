import pytest
import torch
from conftest import tiny_pretrainer

from clmae.models import losses


def _grads(module):
    return {name: p.grad for name, p in module.named_parameters()}


def test_forward_mae_shapes_and_learned_topk(images):
    model = tiny_pretrainer()
    out = model.forward_mae(images)
    assert out["pred"].shape == (6, 49, 16) and out["mask"].shape == (6, 49) and out["loss"].ndim == 0
    assert out["mask"].sum(1).tolist() == [49.0 - 12] * 6
    # The visible patches are exactly the masking module's 12 highest scores.
    with torch.no_grad():
        scores = model.masker(model.embed(images))
    for n in range(6):
        kept = set(torch.nonzero(out["mask"][n] == 0).flatten().tolist())
        assert kept == set(torch.topk(scores[n], 12).indices.tolist())
    # The loss is MAE's: mean per-patch squared error over the removed patches, recomputed here by hand.
    target = model.patchify(images)
    per_patch = ((out["pred"] - target) ** 2).mean(-1)
    expected = (per_patch * out["mask"]).sum() / out["mask"].sum()
    torch.testing.assert_close(out["loss"], expected)


def test_mae_baseline_uses_seedable_random_masks(images):
    model = tiny_pretrainer("mae")
    a = model.forward_mae(images, torch.Generator().manual_seed(0))["mask"]
    b = model.forward_mae(images, torch.Generator().manual_seed(0))["mask"]
    c = model.forward_mae(images, torch.Generator().manual_seed(1))["mask"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="method='mae'"):
        model.forward_masker(images, 1.0)


def test_mae_step_gradients_never_reach_the_masker(images):
    model = tiny_pretrainer()
    model.forward_mae(images)["loss"].backward()
    assert all(g is None for g in _grads(model.masker).values())
    trainable = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert "pos_embed" not in trainable
    assert all(model.encoder.get_parameter(n).grad is not None for n in trainable)
    assert all(g is not None for n, g in _grads(model.decoder).items() if n != "pos_embed")


@pytest.mark.parametrize("lam", [1.0, -1.0])
def test_masker_step_gradients_reach_only_the_masker(images, lam):
    model = tiny_pretrainer()
    out = model.forward_masker(images, lam)
    out["loss"].backward()
    assert all(g is None for g in _grads(model.encoder).values())
    assert all(g is None for g in _grads(model.decoder).values())
    masker_grads = _grads(model.masker)
    assert all(g is not None for g in masker_grads.values())
    assert sum(g.abs().sum() for g in masker_grads.values()) > 0
    # The encoder and decoder are trainable again afterwards (only frozen during the masker's forward).
    assert model.encoder.blocks[0].attn.qkv.weight.requires_grad


@pytest.mark.slow
def test_masker_loss_composition_and_lambda_sign(images):
    model = tiny_pretrainer()
    plus, minus = model.forward_masker(images, 1.0), model.forward_masker(images, -1.0)
    for out, lam in ((plus, 1.0), (minus, -1.0)):
        total = lam * out["rec"] + out["gauss"] + out["kl"] + out["div"]
        torch.testing.assert_close(out["loss"], total)
    # Each term recomputed independently from the returned scores.
    s = plus["scores"].detach()
    torch.testing.assert_close(plus["gauss"], losses.gaussian_loss(s))
    torch.testing.assert_close(plus["kl"], losses.kl_loss(s, 0.25))
    torch.testing.assert_close(plus["div"], losses.diversity_loss(s))
    with torch.no_grad():
        pred = model.forward_soft(model.embed(images), s)
    errors = ((pred - model.patchify(images)) ** 2).mean(-1)
    torch.testing.assert_close(plus["rec"], ((1 - s) * errors).sum() / (1 - s).sum())
    # The partner and the adversary differ exactly by the sign of the reconstruction gradient:
    # grad(+1) - grad(-1) = 2 grad(L_rec).
    head = model.masker.mlp_head[1].weight
    g_plus = torch.autograd.grad(plus["loss"], head)[0]
    g_minus = torch.autograd.grad(minus["loss"], head)[0]
    g_rec = torch.autograd.grad(model.forward_masker(images, 0.0)["rec"], head)[0]
    torch.testing.assert_close(g_plus - g_minus, 2 * g_rec, atol=1e-6, rtol=1e-4)


def test_all_ones_soft_mask_equals_unmasked_forward(images):
    model = tiny_pretrainer().eval()
    tokens = model.embed(images)
    ones = torch.ones(6, 49)
    # The soft-masked encoder with every score 1 is timm's own unmasked forward_features.
    torch.testing.assert_close(
        model.forward_encoder(ones.unsqueeze(-1) * tokens), model.encoder.forward_features(images)
    )
    unmasked = model.decoder(model.encoder.forward_features(images))
    torch.testing.assert_close(model.forward_soft(tokens, ones), unmasked)


def test_soft_scores_scale_tokens_with_their_positions_but_not_the_cls(images):
    model = tiny_pretrainer().eval()
    tokens = model.embed(images)
    # Scores of 0 remove everything a patch carries (content and position): the output no longer depends on the image.
    zeros = torch.zeros(6, 49)
    out = model.forward_soft(tokens, zeros)
    torch.testing.assert_close(out, out[:1].expand_as(out))
    # What is left is the unscaled CLS token (+ its position): zeroing it as well changes the output.
    with torch.no_grad():
        model.encoder.cls_token.zero_()
        model.encoder.pos_embed[:, :1] = 0
    assert not torch.allclose(model.forward_soft(tokens, zeros), out, atol=1e-4)


def test_norm_pix_loss_changes_the_target(images):
    model = tiny_pretrainer(norm_pix_loss=True)
    t = model.targets(images)
    torch.testing.assert_close(t.mean(-1), torch.zeros(6, 49), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.randn(2, 1, 32, 32), "must be 28x28"),
        (torch.randn(2, 3, 28, 28), "must have 1 channel"),
        (torch.randint(0, 255, (2, 1, 28, 28), dtype=torch.uint8), "got dtype torch.uint8"),
        (torch.randn(1, 28, 28), r"got shape \(1, 28, 28\)"),
        (torch.randn(2, 1, 28, 28, dtype=torch.float64), "images are torch.float64 but the model's weights"),
        ([[0.0]], "got list"),
    ],
)
def test_bad_images_get_clear_errors(bad, message):
    model = tiny_pretrainer()
    with pytest.raises(ValueError, match=message):
        model.forward_mae(bad)
    with pytest.raises(ValueError, match=message):
        model.forward_masker(bad, 1.0)
