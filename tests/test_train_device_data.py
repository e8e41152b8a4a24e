"""Training on device-held data with on-device augmentation, the mask probe and the fixed-lambda diagnostic."""

import shutil

import pytest
import torch
from test_train_trainer import tiny_config

from clmae.curriculum import curriculum_factor
from clmae.data import GlobalBatchSampler, build_pretraining_data
from clmae.train import trainer
from clmae.train.checkpoint import checkpoint_path, load_checkpoint
from clmae.train.probe import probe_statistics, read_probe

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.slow
def test_augmented_run_resumed_inside_an_epoch_equals_an_uninterrupted_run(tmp_path):
    common = {"data": "fmnist-sample", "augment": True, "epoch_size": 96, "batch_size": 16, "save_every_steps": 4}
    straight = trainer.train(tiny_config(tmp_path / "a", **common))
    mid = checkpoint_path(tmp_path / "a", 1, 8)  # 2 updates into the second epoch (6 updates each)
    assert mid.is_file()
    (tmp_path / "b").mkdir()
    shutil.copy(mid, tmp_path / "b" / mid.name)
    resumed = trainer.train(tiny_config(tmp_path / "b", **common), resume="auto")
    assert resumed["step"] == straight["step"] == 12
    a, b = load_checkpoint(straight["checkpoint"])["model"], load_checkpoint(resumed["checkpoint"])["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert straight["history"][-1]["mae_loss"] == resumed["history"][-1]["mae_loss"]


@pytest.mark.slow
def test_augmentation_changes_training_and_is_off_by_default_for_fashion_mnist(tmp_path):
    plain = trainer.train(tiny_config(tmp_path / "plain", data="fmnist-sample", epochs=1, epoch_size=64))
    again = trainer.train(tiny_config(tmp_path / "again", data="fmnist-sample", epochs=1, epoch_size=64))
    aug = trainer.train(tiny_config(tmp_path / "aug", data="fmnist-sample", epochs=1, epoch_size=64, augment=True))
    assert plain["history"][0]["mae_loss"] == again["history"][0]["mae_loss"]
    assert aug["history"][0]["mae_loss"] != plain["history"][0]["mae_loss"]


@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_mask_probe_records_the_masks_each_probed_image_was_trained_with(tmp_path, method):
    cfg = tiny_config(tmp_path / method, method=method, data="synthetic:48", epochs=3, batch_size=8, mask_probe=20)
    trainer.train(cfg)
    records = read_probe(tmp_path / method)
    assert sorted(records) == [1, 2, 3]
    for r in records.values():
        assert r["mask"].shape == (20, 49) and (r["seen"] == 1).all()  # 48 images in 6 batches of 8: all read
        assert (r["mask"].sum(1) == round(0.75 * 49)).all()  # 37 of 49 hidden, as num_keep(49, 0.75) keeps 12
    stats = probe_statistics(tmp_path / method, 0.75)
    per_image = stats["run"]["distinct_per_image"]
    assert 1 <= per_image["min"] <= per_image["max"] <= 3 and per_image["epochs_seen_mean"] == 3
    first = stats["epochs"][0]
    keep = 1 - records[1]["mask"].float().mean(0)
    assert first["keep_min"] == pytest.approx(float(keep.min())) and first["images"] == 20
    assert first["distinct_masks"] == len({tuple(m.tolist()) for m in records[1]["mask"]})
    if method == "mae":  # fresh random masks: every image gets a new one each epoch
        assert per_image["min"] == 3


def test_mask_probe_records_the_mae_step_masks_of_the_probed_images(tmp_path, monkeypatch):
    """The recorded row of image i is the mask the MAE step used for image i (checked by capturing them)."""
    seen = {}
    real = trainer.train_step

    def spy(model, micro, *args, **kwargs):
        stats = real(model, micro, *args, **kwargs)
        seen.setdefault("masks", []).extend(stats["masks"])
        return stats

    monkeypatch.setattr(trainer, "train_step", spy)
    cfg = tiny_config(tmp_path, data="synthetic:48", epochs=1, batch_size=8, accum_iter=2, mask_probe=48)
    trainer.train(cfg)
    data = build_pretraining_data("synthetic:48", 1, 28)
    sampler = GlobalBatchSampler(data.dataset, 8, 2, 1, 0, seed=0)
    sampler.set_epoch(0)
    order = sampler.plan()[0].flatten()
    masks = torch.cat(seen["masks"])
    expected = torch.zeros(48, 49, dtype=torch.uint8)
    expected[order] = masks.to(torch.uint8)
    assert torch.equal(read_probe(tmp_path)[1]["mask"], expected)


@pytest.mark.slow
def test_fixed_lambda_holds_the_factor_and_is_only_for_clmae(tmp_path):
    fixed = trainer.train(tiny_config(tmp_path / "fixed", epochs=3, fixed_lambda=-1.0))
    assert [r["lam"] for r in fixed["history"]] == [-1.0, -1.0, -1.0]
    curriculum = trainer.train(tiny_config(tmp_path / "curr", epochs=3))
    assert [r["lam"] for r in curriculum["history"]] == [curriculum_factor(e, 3) for e in range(3)]
    with pytest.raises(ValueError, match="only applies to method=clmae"):
        tiny_config(tmp_path / "x", method="mae", fixed_lambda=1.0).validate()
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        tiny_config(tmp_path / "x", fixed_lambda=2.0).validate()


def _jpeg_folder(root, count=16):
    from PIL import Image

    for i in range(count):
        (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        size = (44 + 4 * (i % 3), 40)  # images of different sizes in one batch
        g = torch.Generator().manual_seed(i)
        pixels = torch.randint(0, 256, (size[1], size[0], 3), generator=g, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(root / f"c{i % 2}" / f"{i}.jpg", quality=90)
    return root


@pytest.mark.slow
def test_device_decoding_trains_resumes_exactly_and_does_not_depend_on_workers(tmp_path):
    """decode=device (the GPU path, run on the CPU): batched decoding and per-sample crops in the main process; the
    weights do not depend on the worker count, and a resume inside an epoch equals an uninterrupted run."""
    folder = _jpeg_folder(tmp_path / "imgs")
    common = {"model": "vit_tiny_patch4_32", "data": str(folder), "decode": "device", "save_every_steps": 3}
    runs = {}
    for workers in (0, 2):
        runs[workers] = trainer.train(tiny_config(tmp_path / f"w{workers}", num_workers=workers, **common))
    a, b = (load_checkpoint(runs[w]["checkpoint"])["model"] for w in (0, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    mid = checkpoint_path(tmp_path / "w0", 1, 3)  # one update into the second epoch (2 updates each)
    (tmp_path / "r").mkdir()
    shutil.copy(mid, tmp_path / "r" / mid.name)
    resumed = trainer.train(tiny_config(tmp_path / "r", num_workers=0, **common), resume="auto")
    c = load_checkpoint(resumed["checkpoint"])["model"]
    assert all(torch.equal(a[k], c[k]) for k in a)
    # the PIL path trains on other crops of the same distribution: other weights
    pil = trainer.train(tiny_config(tmp_path / "pil", num_workers=0, **{**common, "decode": "pil"}))
    d = load_checkpoint(pil["checkpoint"])["model"]
    assert not all(torch.equal(a[k], d[k]) for k in a)
    with pytest.raises(ValueError, match="decode must be one of auto, pil, device"):
        tiny_config(tmp_path / "x", decode="gpu").validate()
