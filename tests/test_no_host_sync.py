"""No host synchronisation inside an iteration (CUDA only: CUDA's sync debug mode raises on any sync)."""

import pytest
import torch
from conftest import tiny_pretrainer

import clmae

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_train_step_never_synchronises(method):
    model = tiny_pretrainer(method).cuda()
    opts = clmae.build_optimizers(model, 1e-3)
    images = torch.randn(16, 1, 28, 28, device="cuda")
    generator = torch.Generator(device="cuda").manual_seed(0) if method == "mae" else None
    clmae.train_step(model, images, 1.0, *opts, generator=generator)  # first call: allocations, lazy init
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = clmae.train_step(model, images, -1.0, *opts, generator=generator)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(v).item() for v in stats.values())
