import argparse
import json
import shutil

import conftest
import pytest
import torch
from conftest import CHECKPOINT_KEYS
from PIL import Image
from safetensors.torch import load_file

import clmae
from clmae.train import trainer
from clmae.train.checkpoint import list_checkpoints, load_checkpoint
from clmae.train.cli import register
from clmae.train.config import TrainConfig
from clmae.train.export import export_pretrained
from clmae.train.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {**conftest.TINY, "masker_depth": 1}


def tiny_config(out, **overrides) -> TrainConfig:
    values = {
        "model": "vit_tiny_patch4_28",
        "model_kwargs": TINY,
        "data": "synthetic:48",
        "epochs": 2,
        "warmup_epochs": 1,
        "batch_size": 8,
        "base_lr": 1e-3,
        "out": str(out),
        "log_every": 2,
        "vis_every": 0,
        "vis_images": 4,
        "keep_checkpoints": 0,
        "export": False,
        "progress": False,
    }
    return TrainConfig.from_dict({**values, **overrides})


def _state(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_resume_is_bit_identical(tmp_path, method):
    straight = tmp_path / "straight"
    trainer.train(tiny_config(straight, method=method, accum_iter=2, batch_size=4))
    first, second = list_checkpoints(straight)
    # Resume in a fresh folder from the state after epoch 1, then run epoch 2 there.
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(first, resumed / first.name)
    result = trainer.train(tiny_config(resumed, method=method, accum_iter=2, batch_size=4), resume="auto")
    assert result["step"] == load_checkpoint(second)["step"] == 2 * 48 // 8
    a, b = _state(second), _state(resumed / second.name)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ca, cb = load_checkpoint(second), load_checkpoint(resumed / second.name)
    assert ca["mae_optimizer"]["state"][0]["exp_avg"].equal(cb["mae_optimizer"]["state"][0]["exp_avg"])
    assert ca["epoch"] == 2 and [r["lam"] for r in ca["metrics"]] == [1.0, -1.0]  # the curriculum, per epoch
    assert set(ca) == CHECKPOINT_KEYS | {"digest"}
    assert isinstance(ca["config"], dict) and ca["config"]["method"] == method
    # the metrics file of the resumed run continues the checkpoint's history
    epochs = [r["epoch"] for r in read_metrics(resumed / "metrics.jsonl") if r.get("type") == "epoch"]
    assert epochs == [1]


def test_resume_refuses_a_different_config(tmp_path):
    trainer.train(tiny_config(tmp_path, epochs=1, warmup_epochs=0))
    with pytest.raises(ValueError, match=r"config differs.*base_lr: 0\.001 -> 0\.002"):
        trainer.train(tiny_config(tmp_path, epochs=1, warmup_epochs=0, base_lr=2e-3), resume="auto")
    with pytest.raises(ValueError, match="global batch of 8"):
        trainer.train(tiny_config(tmp_path, epochs=1, warmup_epochs=0, batch_size=16), resume="auto")
    with pytest.raises(ValueError, match=r"already holds checkpoints.*--resume auto"):
        trainer.train(tiny_config(tmp_path, epochs=1, warmup_epochs=0))  # a fresh run never overwrites one
    with pytest.raises(FileNotFoundError, match="--resume auto"):
        trainer.train(tiny_config(tmp_path, epochs=1, warmup_epochs=0), resume=str(tmp_path / "none.pt"))


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    real_step = trainer.train_step

    def poisoned(model, images, lam, *args, **kwargs):
        if lam < 0:  # epoch 2 of 2: a NaN image makes every loss NaN, for real
            images = [x.clone().fill_(float("nan")) for x in images]
        return real_step(model, images, lam, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", poisoned)
    cfg = tiny_config(tmp_path, export=True, log_every=100)
    with pytest.raises(trainer.NonFiniteLossError, match=r"NaN or inf in epoch 1.*newest checkpoint is .*0001\.pt"):
        trainer.train(cfg)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-0001.pt"]
    state = _state(tmp_path / "checkpoint-0001.pt")
    assert all(torch.isfinite(v).all() for v in state.values())
    assert not (tmp_path / "export").exists()


def test_image_folder_run_does_not_depend_on_worker_processes(tmp_path):
    # MAE's augmentation draws from per-sample seeds: 0 or 2 persistent workers give the same weights.
    for i in range(16):
        (tmp_path / "imgs" / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (40, 44, 3), generator=torch.Generator().manual_seed(i), dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(tmp_path / "imgs" / f"c{i % 2}" / f"{i}.png")
    states = []
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        cfg = tiny_config(out, model="vit_tiny_patch4_32", data=str(tmp_path / "imgs"), num_workers=workers, epochs=2)
        trainer.train(cfg)
        states.append(_state(out / "checkpoint-0002.pt"))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def _cli(argv):
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_absurd_learning_rate_stops_the_command_with_a_clear_message(tmp_path, capsys):
    overrides = [f"model_kwargs.{k}={v}" for k, v in TINY.items()]
    argv = [
        "train",
        "--data",
        "synthetic:32",
        "--out",
        str(tmp_path),
        "lr=1e30",
        "warmup_epochs=0",
        "batch_size=8",
        "progress=false",
        *overrides,
    ]
    assert _cli(argv) == 1
    assert "stopped: the loss became NaN or inf in epoch 0" in capsys.readouterr().err
    assert list_checkpoints(tmp_path) == [] and not (tmp_path / "export").exists()


@pytest.mark.slow
@pytest.mark.integration
def test_fashion_mnist_run_learns_and_is_observable(tmp_path):
    out = tmp_path / "run"
    overrides = [f"model_kwargs.{k}={v}" for k, v in TINY.items()]
    argv = [
        "train",
        "--recipe",
        "clmae_fmnist_tiny",
        "--data",
        "fmnist-sample",
        "--out",
        str(out),
        "epochs=3",
        "batch_size=50",
        "base_lr=5e-3",
        "log_every=5",
        "vis_every=1",
        "progress=false",
        *overrides,
    ]
    assert _cli(argv) == 0
    records = read_metrics(out / "metrics.jsonl")
    steps = [r for r in records if r.get("type") != "epoch"]
    epochs = [r for r in records if r.get("type") == "epoch"]
    assert [r["lam"] for r in epochs] == [1.0, pytest.approx(1 / 3), -1.0]  # curriculum_factor(e, 3)
    # the reconstruction loss falls: first logged window vs the last epoch's mean
    assert epochs[-1]["mae_loss"] < 0.8 * steps[0]["mae_loss"]
    for key in (
        "masker_loss",
        "rec",
        "gauss",
        "kl",
        "div",
        "score_mean",
        "lr",
        "images_per_s",
        "position_bias",
        "mask_diversity",
        "score_to_keep",
        "score_binary",
    ):
        assert key in steps[-1], key
    assert (out / "config.yaml").is_file() and (out / "history.png").is_file()
    assert sorted(p.name for p in (out / "vis").iterdir()) == ["masks-0001.png", "masks-0002.png", "masks-0003.png"]
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-0002.pt", "checkpoint-0003.pt"]
    # exported weights: the encoder loads into a plain timm model
    encoder = load_file(out / "export" / "model.safetensors")
    model = clmae.create_model("vit_tiny_patch4_28", **{k: TINY[k] for k in ("embed_dim", "depth", "num_heads")})
    model.load_state_dict(encoder)
    assert json.loads((out / "export" / "train_config.json").read_text())["epochs"] == 3
    # clmae visualize
    assert (
        _cli(["visualize", str(out / "checkpoint-0003.pt"), "--out", str(tmp_path / "vis"), "--num-images", "3"]) == 0
    )
    assert {p.name for p in (tmp_path / "vis").iterdir()} == {
        "masks-checkpoint-0003.png",
        "history-checkpoint-0003.png",
    }


def test_export_writes_a_weights_folder_that_rebuilds_the_model(tmp_path):
    torch.manual_seed(0)
    model = clmae.create_pretraining_model("vit_tiny_patch4_28", **TINY)
    folder = export_pretrained(model, tmp_path / "export", tiny_config(tmp_path).to_dict())
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "pretraining.safetensors",
        "train_config.json",
    ]
    encoder = clmae.create_model("vit_tiny_patch4_28", **{k: TINY[k] for k in ("embed_dim", "depth", "num_heads")})
    encoder.load_state_dict(load_file(folder / "model.safetensors"))
    assert torch.equal(encoder.blocks[0].attn.qkv.weight, model.encoder.blocks[0].attn.qkv.weight)
    full = clmae.load_pretraining_model(folder)
    assert full.config == model.config
    assert json.loads((folder / "config.json").read_text())["clmae"]["config"]["arch"] == "vit_tiny_patch4_28"


def test_checkpoint_files_are_written_atomically_and_pruned(tmp_path):
    from clmae.train.checkpoint import prune_checkpoints, save_checkpoint

    for epoch in (1, 2, 3):
        save_checkpoint(
            {"model": {"w": torch.full((2,), float(epoch))}, "config": {}}, tmp_path / f"checkpoint-{epoch:04d}.pt"
        )
    (tmp_path / ".checkpoint-0004.pt.tmp1").write_bytes(b"half a file")  # a write killed half-way
    (tmp_path / "checkpoint-notes.txt").write_text("not a checkpoint")
    assert [p.name for p in list_checkpoints(tmp_path)] == [
        "checkpoint-0001.pt",
        "checkpoint-0002.pt",
        "checkpoint-0003.pt",
    ]
    prune_checkpoints(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint-0002.pt",
        "checkpoint-0003.pt",
        "checkpoint-notes.txt",
    ]
    assert load_checkpoint(tmp_path / "checkpoint-0003.pt")["model"]["w"].tolist() == [3.0, 3.0]
    (tmp_path / "checkpoint-0009.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "checkpoint-0009.pt")


def test_unreadable_images_stop_the_run_naming_the_file_or_are_skipped(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(16):
        Image.new("RGB", (40 + i, 36), (i * 15, 80, 200 - i * 10)).save(folder / f"{i:02d}.png")
    (folder / "07b.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    cfg = dict(model="vit_tiny_patch4_32", data=str(folder), epochs=1, device="cpu")
    with pytest.raises(ValueError, match=r"07b\.jpg"):  # one batch of all 17 files reads the bad one
        trainer.train(tiny_config(tmp_path / "strict", **cfg, batch_size=17))
    result = trainer.train(tiny_config(tmp_path / "skip", **cfg, batch_size=8, skip_unreadable=True))
    assert "16 images (1 unreadable left out)" in capsys.readouterr().out and result["step"] == 2
