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
    """The trainer's batches (augmentation on the device), the training step and the mask probe, per update."""
    from clmae.data import DeviceImages, GlobalBatchSampler, PretrainingData
    from clmae.train.batches import EpochBatches
    from clmae.train.probe import MaskProbe

    model = tiny_pretrainer(method).cuda()
    opts = clmae.build_optimizers(model, 1e-3)
    images = torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8)
    held = DeviceImages(images, (0.3,), (0.35,), 28, augment=True)
    data = PretrainingData(held, held, held.mean, held.std, "random")
    batches = EpochBatches(data, GlobalBatchSampler(held, 8, 2, seed=0), "cuda", 28, 1, with_indices=True)
    assert batches.held and held.device.type == "cuda"
    epoch = batches.epoch(0)  # its indices, seeds and crop boxes: made on the device at the first update
    probe = MaskProbe(32, model.num_patches, torch.device("cuda"))

    def body(s):
        micro, indices = next(epoch)
        gens = batches.mask_generators(0, s) if method == "mae" else None
        stats = clmae.train_step(model, micro, 1.0, *opts, generator=gens, return_masks=True)
        for index, mask in zip(indices, stats["masks"]):
            probe.record(index, mask)
        return stats

    body(0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        stats = body(1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(stats["mae_loss"]).item()
