"""The trainer's batches (clmae.train.batches): the three input pipelines serve what the sampler decides, an epoch
started mid-way serves the rest of the uninterrupted epoch, MAE's mask seeds follow the chunk numbers, and the run
state in a checkpoint keeps its keys."""

import pytest
import torch
from conftest import CHECKPOINT_KEYS, tiny_pretrainer
from PIL import Image

from clmae.data import DeviceImages, GlobalBatchSampler, PretrainingData, build_pretraining_data, item_seed
from clmae.train.batches import EpochBatches, accum_steps
from clmae.train.config import TrainConfig
from clmae.train.resume import RunState, restore, training_state
from clmae.train.step import build_optimizers

pytestmark = pytest.mark.usefixtures("one_thread")


def _held(n=24, augment=True) -> PretrainingData:
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    held = DeviceImages(images, (0.3,), (0.35,), 28, augment=augment)
    return PretrainingData(held, held, held.mean, held.std, "random")


def _folder(root, n=12, augment=None):
    for i in range(n):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (30 + i, 36, 3), generator=torch.Generator().manual_seed(i), dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(root / f"c{i % 2}" / f"{i}.png")
    return build_pretraining_data(str(root), 1, 28, augment=augment)


def _all(batches, epoch, first=0):
    return [(torch.stack(micro), torch.stack(indices)) for micro, indices in batches.epoch(epoch, first)]


@pytest.mark.parametrize("augment", [True, False])
def test_device_held_batches_are_the_samplers_images_and_seeds(augment):
    data = _held(augment=augment)
    sampler = GlobalBatchSampler(data.dataset, 3, 2, num_replicas=2, rank=1, seed=5)
    batches = EpochBatches(data, sampler, "cpu", 28, 1)
    assert (batches.steps_per_epoch, batches.global_batch, batches.accum) == (2, 12, 2)
    got = _all(batches, epoch=1)
    sampler.set_epoch(1)
    pairs = list(sampler)  # the DataLoader's (index, seed) pairs, in order
    assert len(got) == 2 and len(pairs) == 2 * 2 * 3
    for s, (micro, indices) in enumerate(got):
        for a in range(2):
            chunk = pairs[(s * 2 + a) * 3 : (s * 2 + a + 1) * 3]
            assert indices[a].tolist() == [i for i, _ in chunk]
            # one image at a time through the data set's own (index, seed) access: the same pixels
            assert torch.equal(micro[a], torch.stack([data.dataset[p] for p in chunk]))


@pytest.mark.parametrize("pipeline", ["held", "pil", "device"])
def test_an_epoch_started_at_update_k_serves_the_rest_of_the_whole_epoch(tmp_path, pipeline):
    data = _held(n=12) if pipeline == "held" else _folder(tmp_path)
    sampler = GlobalBatchSampler(data.dataset, 2, 2, num_replicas=1, rank=0, seed=3)
    decode = "device" if pipeline == "device" else "pil"
    batches = EpochBatches(data, sampler, "cpu", 28, 1, decode=decode, with_indices=True)
    assert (batches.decoder is not None) == (pipeline == "device") and batches.held == (pipeline == "held")
    whole, rest = _all(batches, 2), _all(batches, 2, first=1)
    assert len(whole) == 3 and len(rest) == 2
    for (x, i), (y, j) in zip(whole[1:], rest):
        assert torch.equal(x, y) and torch.equal(i, j)
    assert not torch.equal(whole[0][0], _all(batches, 3)[0][0])  # another epoch: other images or other crops


def test_the_decoding_pipelines_serve_the_same_images(tmp_path):
    data = _folder(tmp_path, augment=False)  # the evaluation transform: one geometry, PIL's or the device's
    served = {}
    for decode in ("pil", "device"):
        sampler = GlobalBatchSampler(data.dataset, 4, 1, num_replicas=1, rank=0, seed=0)
        batches = EpochBatches(data, sampler, "cpu", 28, 1, decode=decode, augment=False, with_indices=True)
        served[decode] = _all(batches, 0)
    assert len(served["pil"]) == 3
    for (x, i), (y, j) in zip(served["pil"], served["device"]):
        assert torch.equal(i, j)
        # PIL's bicubic resampling and the device's agree up to a grey level or two
        assert (x - y).abs().max() * data.std[0] <= 2 / 255 + 1e-6


def test_without_indices_a_dataloader_epoch_serves_none(tmp_path):
    data = _folder(tmp_path)
    batches = EpochBatches(data, GlobalBatchSampler(data.dataset, 4, 1, 1, 0), "cpu", 28, 1, decode="pil")
    assert batches.loader is not None and batches.decoder is None and not batches.held
    (micro, indices), *_ = batches.epoch(0)
    assert indices == [None] and len(micro) == 1 and micro[0].shape == (4, 1, 28, 28)


def test_mask_generators_follow_the_chunks_whatever_the_split():
    data = _held(n=32)

    def first_draws(accum, world, rank, step):
        sampler = GlobalBatchSampler(data.dataset, 2, accum, num_replicas=world, rank=rank, seed=7)
        gens = EpochBatches(data, sampler, "cpu", 28, 1).mask_generators(4, step)
        return [torch.rand(1, generator=g).item() for g in gens]

    # chunk c = (step * accum + a) * world + rank; its seed item_seed(seed, epoch, -1 - c)
    expected = [torch.rand(1, generator=torch.Generator().manual_seed(item_seed(7, 4, -1 - c))).item() for c in (6, 7)]
    assert first_draws(2, 1, 0, step=3) == expected
    assert first_draws(1, 2, 0, step=3) + first_draws(1, 2, 1, step=3) == expected


def test_accumulation_steps_come_from_the_global_batch():
    cfg = TrainConfig(batch_size=8, accum_iter=3)
    assert accum_steps(cfg, 4) == 3
    cfg.global_batch = 64
    assert accum_steps(cfg, 2) == 4 and accum_steps(cfg, 8) == 1
    with pytest.raises(ValueError, match=r"global_batch 64 is not a multiple of batch_size 8 x 3 processes"):
        accum_steps(cfg, 3)


def test_run_state_goes_through_a_checkpoint_dict_with_the_keys_of_the_file_format():
    model = tiny_pretrainer("clmae")
    opts = build_optimizers(model, 1e-3)
    cfg = TrainConfig(model="vit_tiny_patch4_28", data="synthetic:64")
    sums = [{"mae_loss": torch.tensor(2.0)}, {"mae_loss": torch.tensor(4.0)}]
    run = RunState(epoch=2, step=17, epoch_step=5, history=[{"epoch": 0}], global_batch=16, data_size=64)
    state = training_state(run, model, *opts, cfg, [{"x": 1}, {"x": 2}], sums)
    assert set(state) == CHECKPOINT_KEYS
    assert (state["epoch"], state["step"], state["epoch_step"], state["metrics"]) == (2, 17, 5, [{"epoch": 0}])
    assert (state["global_batch"], state["data_size"], state["epoch_sums"]) == (16, 64, sums)
    state["rng_ranks"] = [{"x": 1}]  # restore() would set these random states: not what this test is about
    fresh = RunState(global_batch=16, data_size=64)
    with pytest.raises(ValueError, match=r"had 64 images .* has 65 now"):
        restore(state, RunState(global_batch=16, data_size=65), model, *opts, cfg, rank=1, world_size=2)
    with pytest.raises(ValueError, match="global batch of 16, this run has 32"):
        restore(state, RunState(global_batch=32, data_size=64), model, *opts, cfg, rank=1, world_size=2)
    state["rng_ranks"] = []  # no random states to set: another process count, rank 1
    back = restore(state, fresh, model, *opts, cfg, rank=1, world_size=3)
    assert back is fresh and (back.epoch, back.step, back.epoch_step, back.history) == (2, 17, 5, [{"epoch": 0}])
    assert back.epoch_sums == {"mae_loss": torch.tensor(3.0)}  # another process count: the mean of the sums
    state["rng_ranks"] = []
    assert restore(state, RunState(global_batch=16, data_size=64), model, *opts, cfg, 1, 2).epoch_sums == sums[1]
