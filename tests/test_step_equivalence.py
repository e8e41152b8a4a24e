"""The step as implemented (masker without a graph in the MAE step, frozen weights out of the masker step's graph)
gives the same losses and updates as the straightforward version that builds every graph and throws gradients away.

Runs on the CPU in float32 (exact up to summation order); set CLMAE_TEST_DEVICE=cuda to check bf16 autocast on a GPU.
"""

import contextlib
import os

import pytest
import torch
from conftest import tiny_pretrainer

import clmae
from clmae.models import losses, pretrainer
from clmae.models.masking import topk_masking

DEVICE = torch.device(os.environ.get("CLMAE_TEST_DEVICE", "cpu"))


def _straightforward_step(model, images, lam, mae_opt, masker_opt, ctx):
    # MAE step with the masking module inside the autograd graph (its gradients are discarded).
    mae_opt.zero_grad(set_to_none=True)
    with ctx:
        tokens = model.embed(images)
        scores = model.masker(tokens)
        visible, mask, ids_restore = topk_masking(tokens, scores.detach(), model.len_keep)
        pred = model.decoder(model.forward_encoder(visible), ids_restore)
        mae_loss = losses.masked_mse(losses.patch_errors(pred, model.targets(images)), mask)
    mae_loss.backward()
    mae_opt.step()
    masker_opt.zero_grad(set_to_none=True)
    # Masking-module step with encoder and decoder weights in the graph (their gradients are discarded).
    original = pretrainer._frozen
    pretrainer._frozen = lambda *modules: contextlib.nullcontext()
    try:
        with ctx:
            out = model.forward_masker(images, lam)
    finally:
        pretrainer._frozen = original
    out["loss"].backward()
    mae_opt.zero_grad(set_to_none=True)
    masker_opt.step()
    return mae_loss.detach(), out["loss"].detach()


@pytest.mark.slow
@pytest.mark.parametrize("lam", [1.0, -0.5])
def test_optimised_step_equals_straightforward_step(lam):
    images = torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(0)).to(DEVICE)
    fast, slow = tiny_pretrainer().to(DEVICE), tiny_pretrainer().to(DEVICE)
    slow.load_state_dict(fast.state_dict())
    fast_opts, slow_opts = clmae.build_optimizers(fast, 1e-3), clmae.build_optimizers(slow, 1e-3)
    ctx = clmae.train.autocast_for(DEVICE)
    tol = {"atol": 1e-6, "rtol": 1e-5} if DEVICE.type == "cpu" else {"atol": 2e-2, "rtol": 2e-2}
    for _ in range(3):
        stats = clmae.train_step(fast, images, lam, *fast_opts)
        mae_loss, masker_loss = _straightforward_step(slow, images, lam, *slow_opts, ctx)
        torch.testing.assert_close(stats["mae_loss"], mae_loss, **tol)
        torch.testing.assert_close(stats["masker_loss"], masker_loss, **tol)
    for (name, a), b in zip(fast.state_dict().items(), slow.state_dict().values()):
        torch.testing.assert_close(a, b, **tol, msg=name)
