"""Resolving --model: raw pixels, random init, weights folders, safetensors files and checkpoints."""

import argparse
import hashlib
import json

import pytest
import torch
from safetensors.torch import save_file

import clmae
from clmae.eval.model import encoder_state, resolve_model

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}
PRETRAIN_TINY = {**TINY, "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2, "masker_depth": 1}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_raw_pixels_has_no_encoder():
    m = resolve_model("raw-pixels")
    assert m.is_raw and m.state_dict is None
    with pytest.raises(ValueError, match="no encoder"):
        m.encoder()


def test_random_init_is_fixed_by_its_seed():
    a = resolve_model("vit_tiny_patch4_28", overrides=TINY, init_seed=0)
    b = resolve_model("vit_tiny_patch4_28", overrides=TINY, init_seed=0)
    c = resolve_model("vit_tiny_patch4_28", overrides=TINY, init_seed=1)
    assert _same(a.state_dict, b.state_dict)
    assert not torch.equal(a.state_dict["blocks.0.attn.qkv.weight"], c.state_dict["blocks.0.attn.qkv.weight"])
    # It is the encoder pretraining starts from: create_pretraining_model after the same seed.
    torch.manual_seed(0)
    ref = clmae.create_pretraining_model("vit_tiny_patch4_28", "mae", **TINY).encoder.state_dict()
    assert _same(a.state_dict, ref)
    assert a.encoder().embed_dim == 32 and a.info["arch"] == "vit_tiny_patch4_28"


def test_unknown_names_and_paths_are_explained(tmp_path):
    with pytest.raises(ValueError, match="Did you mean"):
        resolve_model("vit_tiny_patch4_82")
    with pytest.raises(FileNotFoundError, match="no such file"):
        resolve_model(str(tmp_path / "missing.safetensors"))
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        resolve_model(str(tmp_path))  # a folder without config.json


def test_hand_written_timm_folder(tmp_path):
    torch.manual_seed(3)
    enc = clmae.create_model("vit_tiny_patch4_28", **TINY)
    save_file(enc.state_dict(), tmp_path / "model.safetensors")
    cfg = {
        "architecture": "vit_tiny_patch16_224",
        "num_classes": 0,
        "model_args": {"img_size": 28, "patch_size": 4, "in_chans": 1, **TINY},
        "pretrained_cfg": {"input_size": [1, 28, 28], "mean": [0.5], "std": [0.25], "crop_pct": 1.0},
    }
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    m = resolve_model(str(tmp_path))
    assert m.kind == "folder" and m.info["sha256"] == _sha(tmp_path / "model.safetensors")
    loaded = m.encoder()
    assert _same(loaded.state_dict(), enc.state_dict())
    assert tuple(loaded.pretrained_cfg["mean"]) == (0.5,)


def test_folder_written_by_save_pretrained(tmp_path):
    hub = pytest.importorskip("clmae.hub")
    if not hasattr(hub, "save_pretrained"):
        pytest.skip("clmae.hub.save_pretrained is not available")
    torch.manual_seed(4)
    model = clmae.create_pretraining_model("vit_tiny_patch4_28", "mae", **PRETRAIN_TINY)
    hub.save_pretrained(model, tmp_path / "w")
    m = resolve_model(str(tmp_path / "w"))
    assert _same(m.encoder().state_dict(), model.encoder.state_dict())


def test_safetensors_file_needs_an_architecture(tmp_path):
    torch.manual_seed(5)
    model = clmae.create_pretraining_model("vit_tiny_patch4_28", "clmae", **PRETRAIN_TINY)
    path = tmp_path / "pretraining.safetensors"
    save_file(model.state_dict(), path)  # a whole pretraining model: encoder.*, decoder.*, masker.*
    with pytest.raises(ValueError, match="arch=NAME"):
        resolve_model(str(path))
    m = resolve_model(str(path), arch="vit_tiny_patch4_28", overrides=TINY)
    assert m.info["sha256"] == _sha(path)
    assert _same(m.encoder().state_dict(), model.encoder.state_dict())
    with pytest.raises(ValueError, match="do not match"):
        resolve_model(str(path), arch="vit_tiny_patch4_28").encoder()  # full-size architecture: shapes differ


def test_clmae_checkpoint_with_its_config(tmp_path):
    torch.manual_seed(6)
    model = clmae.create_pretraining_model("vit_tiny_patch4_28", "clmae", **PRETRAIN_TINY)
    path = tmp_path / "ckpt.pt"
    torch.save({"model": model.state_dict(), "config": model.config.to_dict(), "epoch": 3}, path)
    m = resolve_model(str(path))
    assert m.kind == "checkpoint" and m.info["arch"] == "vit_tiny_patch4_28"
    assert _same(m.encoder().state_dict(), model.encoder.state_dict())


def test_training_run_checkpoint(tmp_path):
    # clmae's trainer: {"model": CLMAE state dict, "config": TrainConfig.to_dict()} with model + model_kwargs.
    torch.manual_seed(9)
    model = clmae.create_pretraining_model("vit_tiny_patch4_28", "clmae", **PRETRAIN_TINY)
    config = {"model": "vit_tiny_patch4_28", "method": "clmae", "model_kwargs": PRETRAIN_TINY, "epochs": 2}
    path = tmp_path / "checkpoint-0002.pt"
    torch.save({"model": model.state_dict(), "config": config, "epoch": 2, "betas": [0.9, 0.95]}, path)
    m = resolve_model(str(path))
    assert m.info["arch"] == "vit_tiny_patch4_28" and m.info["overrides"] == TINY
    assert _same(m.encoder().state_dict(), model.encoder.state_dict())


def test_reference_checkpoint_with_argparse_args(tmp_path):
    torch.manual_seed(7)
    enc = clmae.create_model("vit_tiny_patch4_28", **TINY)
    # The CL-MAE reference layout: timm encoder keys next to masking_net.*, decoder_* and mask_token.
    state = {**enc.state_dict(), "mask_token": torch.zeros(1, 1, 8), "decoder_embed.weight": torch.zeros(8, 32)}
    state["masking_net.cls_token"] = torch.zeros(1, 1, 32)
    path = tmp_path / "checkpoint-199.pth"
    torch.save({"model": state, "epoch": 199, "args": argparse.Namespace(model="mae_vit_tiny")}, path)
    m = resolve_model(str(path), arch="vit_tiny_patch4_28", overrides=TINY)
    assert _same(m.encoder().state_dict(), enc.state_dict())
    assert set(encoder_state(state)) == set(enc.state_dict())


class Thing:
    """An arbitrary class: unpickling it would run code, so weights_only refuses it."""


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "obj": Thing()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        resolve_model(str(path), arch="vit_tiny_patch4_28")


def test_published_weights_through_the_hub(tmp_path):
    hub = pytest.importorskip("clmae.hub")
    if not hasattr(hub, "save_pretrained"):
        pytest.skip("clmae.hub.save_pretrained is not available")
    torch.manual_seed(8)
    enc = clmae.create_model("vit_tiny_patch4_28", **TINY)
    hub.save_pretrained(enc, tmp_path / "w", name="vit_tiny_patch4_28")
    m = resolve_model(f"local-dir:{tmp_path / 'w'}")
    assert m.kind == "hub" and m.info["sha256"] == _sha(tmp_path / "w" / "model.safetensors")
    assert _same(m.encoder().state_dict(), enc.state_dict())
    with pytest.raises(ValueError, match="Did you mean"):
        resolve_model("vit_tiny_patch4_29")  # neither an architecture nor a published weight


@pytest.fixture
def restore_allow_list():
    """``add_safe_globals`` changes a process-wide list: put it back as it was."""
    get, clear, add = (
        getattr(torch.serialization, n) for n in ("get_safe_globals", "clear_safe_globals", "add_safe_globals")
    )
    before = get()
    yield
    clear()
    add(before)


def _trainer_checkpoint(path, seed: int = 10):
    """What clmae's trainer writes: model, optimizer states, config, random states (no argparse objects)."""
    from clmae.train.checkpoint import rng_state

    torch.manual_seed(seed)
    model = clmae.create_pretraining_model("vit_tiny_patch4_28", "clmae", **PRETRAIN_TINY)
    opt = torch.optim.AdamW(model.parameters())
    model.forward_mae(torch.randn(2, 1, 28, 28))["loss"].backward()
    opt.step()
    config = {"model": "vit_tiny_patch4_28", "method": "clmae", "model_kwargs": PRETRAIN_TINY, "seed": 0}
    state = {"model": model.state_dict(), "mae_optimizer": opt.state_dict(), "masker_optimizer": None, "epoch": 1}
    torch.save({**state, "step": 1, "config": config, "rng": rng_state(), "metrics": [{"loss": 1.0}]}, path)
    return model


def _reference_checkpoint(path):
    torch.manual_seed(11)
    enc = clmae.create_model("vit_tiny_patch4_28", **TINY)
    torch.save({"model": enc.state_dict(), "epoch": 1, "args": argparse.Namespace(mask_ratio=0.75)}, path)
    return enc


def test_checkpoints_load_on_torch_2_4_without_safe_globals(tmp_path, monkeypatch, restore_allow_list):
    monkeypatch.delattr(torch.serialization, "safe_globals")  # added in torch 2.5
    model = _trainer_checkpoint(tmp_path / "checkpoint-0001.pt")
    enc = _reference_checkpoint(tmp_path / "ref.pth")
    assert _same(resolve_model(str(tmp_path / "checkpoint-0001.pt")).encoder().state_dict(), model.encoder.state_dict())
    ref = resolve_model(str(tmp_path / "ref.pth"), arch="vit_tiny_patch4_28", overrides=TINY)
    assert _same(ref.encoder().state_dict(), enc.state_dict())


def test_checkpoints_on_torch_without_allow_lists(tmp_path, monkeypatch, restore_allow_list):
    # torch 2.1-2.3: neither safe_globals nor add_safe_globals; weights_only=True still reads clmae's checkpoints.
    monkeypatch.delattr(torch.serialization, "safe_globals")
    monkeypatch.delattr(torch.serialization, "add_safe_globals")
    model = _trainer_checkpoint(tmp_path / "checkpoint-0001.pt")
    m = resolve_model(str(tmp_path / "checkpoint-0001.pt"))
    assert m.info["overrides"] == TINY and _same(m.encoder().state_dict(), model.encoder.state_dict())
    _reference_checkpoint(tmp_path / "ref.pth")  # its argparse 'args' cannot be allowed there: say so
    with pytest.raises(ValueError, match=r"needs torch >= 2\.4.*torch\.save\(\{'model'"):
        resolve_model(str(tmp_path / "ref.pth"), arch="vit_tiny_patch4_28")


def test_truncated_checkpoint_is_named_as_such(tmp_path):
    _trainer_checkpoint(tmp_path / "full.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "full.pt").read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        resolve_model(str(tmp_path / "cut.pt"))


def test_weights_that_do_not_fit_name_the_keys(tmp_path):
    torch.manual_seed(12)
    state = clmae.create_model("vit_tiny_patch4_28", **TINY).state_dict()
    state["cls_token"] = torch.zeros(1, 1, 16)  # another width
    state["extra.weight"] = torch.zeros(2)
    del state["blocks.1.mlp.fc2.bias"]
    save_file(state, tmp_path / "w.safetensors")
    m = resolve_model(str(tmp_path / "w.safetensors"), arch="vit_tiny_patch4_28", overrides=TINY)
    with pytest.raises(ValueError, match="do not match") as err:
        m.encoder()
    message = str(err.value)
    assert "blocks.1.mlp.fc2.bias" in message and "extra.weight" in message
    assert "cls_token (1, 1, 16) vs (1, 1, 32)" in message
    from clmae.eval.finetune import build_classifier

    with pytest.raises(ValueError, match=r"cls_token \(1, 1, 16\) vs \(1, 1, 32\)"):
        build_classifier(m, num_classes=3, drop_path=0.0)
