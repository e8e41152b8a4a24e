"""push_to_hub through the real huggingface_hub upload code to the loopback Hub, then back down."""

import hashlib
import json

import pytest
import timm
import torch
from _hub_server import serve
from conftest import tiny_pretrainer
from safetensors.torch import load_file

from clmae.hub import load_pretrained, load_pretraining_model, push_to_hub, save_pretrained

REPO = "clmae-test/vit_tiny_patch4_28.fmnist_demo"


@pytest.fixture
def hub(monkeypatch, tmp_path):
    hub = serve(monkeypatch, tmp_path / "hf-cache")
    yield hub
    hub.stop()


@pytest.mark.slow
def test_save_push_load_roundtrip(hub, tmp_path, monkeypatch, capsys, images):
    model = tiny_pretrainer(seed=9).eval()
    meta = {"datasets": ["fashion_mnist"], "metrics": {"knn_top1": 0.7}}
    folder = save_pretrained(model, tmp_path / "export", metadata=meta)
    entry = push_to_hub(folder, REPO, token="hf_test")
    out = capsys.readouterr().out
    commit = hub.refs[REPO]["main"]
    assert entry["revision"] == commit and f"commit {commit}" in out
    for name in ("config.json", "model.safetensors", "pretraining.safetensors"):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert f"{digest}  {name}" in out and entry["files"][name] == digest
        assert hub.repos[REPO][commit][name] == (folder / name).read_bytes()  # what the Hub stored
    assert entry["name"] == "vit_tiny_patch4_28.fmnist_demo" and entry["dataset"] == "fashion_mnist"
    assert entry["metrics"] == {"knn_top1": 0.7} and entry["method"] == "clmae"
    assert f'timm.create_model("hf-hub:{REPO}", pretrained=True)' in hub.repos[REPO][commit]["README.md"].decode()

    # The printed entry, pasted into a manifest, pins and verifies the download.
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"format": 2, "weights": [{**entry, "aliases": ["demo"]}]}))
    monkeypatch.setenv("CLMAE_WEIGHTS_MANIFEST", str(manifest))
    encoder = load_pretrained("demo", cache_dir=tmp_path / "c")
    ref = load_file(folder / "model.safetensors")
    assert all(torch.equal(encoder.state_dict()[k], v) for k, v in ref.items())
    with torch.no_grad():
        assert torch.equal(encoder(images), model.encoder(images))
    full = load_pretraining_model("demo", cache_dir=tmp_path / "c")
    assert torch.equal(full.forward_masker(images, 1.0)["loss"], model.forward_masker(images, 1.0)["loss"])
    by_timm = timm.create_model(f"hf-hub:{REPO}@{commit}", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(by_timm(images), model.encoder(images))


def test_push_refuses_broken_folder(hub, tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="config"):
        push_to_hub(tmp_path / "x", REPO, token="hf_test")
    assert not [r for r in hub.requests if r[0] == "POST"]


def test_push_command(hub, tmp_path, monkeypatch, capsys):
    import argparse

    from clmae.hub.cli import register

    folder = save_pretrained(tiny_pretrainer(seed=1).encoder, tmp_path / "enc")
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    parser = argparse.ArgumentParser(prog="clmae")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["push", str(folder), "clmae-test/encoder-only"])
    assert args.func(args) == 0
    commit = hub.refs["clmae-test/encoder-only"]["main"]
    assert f"commit {commit}" in capsys.readouterr().out
    assert set(hub.repos["clmae-test/encoder-only"][commit]) == {"config.json", "model.safetensors", "README.md"}
