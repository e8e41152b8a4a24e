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


@cuda
@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_the_trainers_loop_body_on_device_held_data_never_synchronises(method):
    """Augmentation on the device, the training step and the mask probe, as the trainer runs them per update."""
    from clmae.data import DeviceImages, GlobalBatchSampler
    from clmae.train.probe import MaskProbe

    model = tiny_pretrainer(method).cuda()
    opts = clmae.build_optimizers(model, 1e-3)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    data = DeviceImages(images, (0.3,), (0.35,), 28, augment=True).to("cuda")
    sampler = GlobalBatchSampler(data, 16, seed=0)
    sampler.set_epoch(0)
    index, seeds = (t.cuda() for t in sampler.plan())  # once per epoch
    crops = data.crop_plan(seeds)  # once per epoch
    probe = MaskProbe(32, model.num_patches, torch.device("cuda"))

    def body(k):
        gen = torch.Generator(device="cuda").manual_seed(k) if method == "mae" else None
        x = data.batch(index[k], crops=[c[k] for c in crops])
        stats = clmae.train_step(model, x, 1.0, *opts, generator=gen, return_masks=True)
        probe.record(index[k], stats["mask"])
        return stats

    body(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = body(1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(stats["mae_loss"]).item()
