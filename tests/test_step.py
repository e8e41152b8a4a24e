import pytest
import torch
from conftest import tiny_pretrainer

import clmae


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(module, before):
    return {n for n, p in module.named_parameters() if not torch.equal(p, before[n])}


def test_weight_decay_groups():
    model = tiny_pretrainer()
    mae_opt, masker_opt = clmae.build_optimizers(model, lr=1e-3)
    for opt, module in ((mae_opt, torch.nn.ModuleList([model.encoder, model.decoder])), (masker_opt, model.masker)):
        decayed = {id(p) for g in opt.param_groups if g["weight_decay"] == 0.05 for p in g["params"]}
        for name, p in module.named_parameters():
            if not p.requires_grad:  # the fixed positions are in no group
                assert all(id(p) not in {id(q) for q in g["params"]} for g in opt.param_groups)
            elif p.ndim >= 2:
                assert id(p) in decayed, name
            else:
                assert id(p) not in decayed, name
        assert all(g["betas"] == (0.9, 0.95) for g in opt.param_groups)
    assert clmae.build_optimizers(tiny_pretrainer("mae"), lr=1e-3)[1] is None


@pytest.mark.slow
def test_each_optimizer_moves_only_its_module(images):
    model = tiny_pretrainer()
    mae_opt, masker_opt = clmae.build_optimizers(model, lr=1e-3)
    for g in masker_opt.param_groups:
        g["lr"] = 0.0  # the masker may only move through its own optimizer
    enc, dec, msk = _snapshot(model.encoder), _snapshot(model.decoder), _snapshot(model.masker)
    stats = clmae.train_step(model, images, 1.0, mae_opt, masker_opt)
    assert not _changed(model.masker, msk)
    assert _changed(model.encoder, enc) and _changed(model.decoder, dec)
    assert "pos_embed" not in _changed(model.encoder, enc)

    model = tiny_pretrainer()
    mae_opt, masker_opt = clmae.build_optimizers(model, lr=1e-3)
    for g in mae_opt.param_groups:
        g["lr"] = 0.0
    enc, dec, msk = _snapshot(model.encoder), _snapshot(model.decoder), _snapshot(model.masker)
    clmae.train_step(model, images, -1.0, mae_opt, masker_opt)
    assert not _changed(model.encoder, enc) and not _changed(model.decoder, dec)
    assert _changed(model.masker, msk) == {n for n, _ in model.masker.named_parameters()}
    expected = {"mae_loss", "masker_loss", "rec", "gauss", "kl", "div", "score_mean"}
    assert set(stats) == expected and all(v.ndim == 0 and not v.requires_grad for v in stats.values())


@pytest.mark.slow
def test_masker_update_sees_the_just_updated_mae(images):
    # Reproduce train_step by hand: MAE update first, then the masker loss computed with the *new* encoder.
    a, b = tiny_pretrainer(), tiny_pretrainer()
    b.load_state_dict(a.state_dict())
    opts_a, opts_b = clmae.build_optimizers(a, 1e-3), clmae.build_optimizers(b, 1e-3)
    stats = clmae.train_step(a, images, 0.5, *opts_a)
    opts_b[0].zero_grad()
    b.forward_mae(images)["loss"].backward()
    opts_b[0].step()
    expected = b.forward_masker(images, 0.5)["loss"]
    torch.testing.assert_close(stats["masker_loss"], expected.detach())


@pytest.mark.slow
def test_mae_baseline_step_and_missing_optimizer(images):
    model = tiny_pretrainer("mae")
    mae_opt, _ = clmae.build_optimizers(model, lr=1e-3)
    stats = clmae.train_step(model, images, 1.0, mae_opt, generator=torch.Generator().manual_seed(0))
    assert set(stats) == {"mae_loss"}
    clmae_model = tiny_pretrainer()
    with pytest.raises(ValueError, match="masker_optimizer"):
        clmae.train_step(clmae_model, images, 1.0, clmae.build_optimizers(clmae_model, 1e-3)[0])


def test_same_seed_same_result_on_cpu(images):
    results = []
    for _ in range(2):
        model = tiny_pretrainer(seed=3)
        opts = clmae.build_optimizers(model, 1e-3)
        for _ in range(2):
            stats = clmae.train_step(model, images, 1.0, *opts)
        results.append((stats["mae_loss"].item(), stats["masker_loss"].item()))
    assert results[0] == results[1]
