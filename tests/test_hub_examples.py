"""examples/ and hubconf.py run against a tiny weights folder (bundled Fashion-MNIST sample, CPU)."""

import runpy
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_pretrainer

from clmae.hub import save_pretrained

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def folder(tmp_path):
    model = tiny_pretrainer(seed=4).eval()
    return save_pretrained(model, tmp_path / "weights"), model.encoder


def _run_example(name, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(ROOT / "examples" / name), run_name="__main__")


@pytest.mark.integration
def test_feature_extraction_example(folder, monkeypatch, capsys):
    _run_example("feature_extraction.py", ["--model", str(folder[0]), "--limit", "100"], monkeypatch)
    out = capsys.readouterr().out
    assert "input (1, 28, 28)" in out and "features (100, 32)" in out and "20-NN accuracy" in out


@pytest.mark.slow
@pytest.mark.integration
def test_finetune_example(folder, monkeypatch, capsys):
    argv = ["--model", f"local-dir:{folder[0]}", "--limit", "100", "--epochs", "1", "--batch-size", "50"]
    _run_example("finetune_timm.py", argv, monkeypatch)
    assert "epoch 0: last loss" in capsys.readouterr().out


def test_hubconf(folder, images):
    path, encoder = folder
    model = torch.hub.load(str(ROOT), "load_pretrained", str(path), source="local", trust_repo=True)
    with torch.no_grad():
        assert torch.equal(model(images), encoder(images))
    with pytest.raises(ValueError, match="not yet published"):
        torch.hub.load(str(ROOT), "vit_b", source="local", trust_repo=True)
    entries = runpy.run_path(str(ROOT / "hubconf.py"))
    assert all(callable(entries[n]) for n in ("mae_vit_b", "mae_vit_l", "mae_vit_h", "vit_b", "create_model"))
    bundled = torch.hub.load(str(ROOT), "vit_t_fmnist", source="local", trust_repo=True)  # no network: in the package
    assert bundled.pretrained_cfg["tag"] == "clmae_fmnist" and bundled.pretrained_cfg["method"] == "clmae"
