"""examples/pretrain_own_images.py runs as written: unlabelled folder -> continued pretraining -> export -> extract
-> kNN (small sizes, CPU)."""

import json
import runpy
import sys
from pathlib import Path

import pytest
import torch

import clmae

pytestmark = pytest.mark.slow  # starts processes or reads the full Fashion-MNIST

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
def test_pretrain_own_images_example(tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    argv = ["--work", str(work), "--count", "200", "--labelled", "200", "--epochs", "1", "--batch-size", "50"]
    monkeypatch.setattr(sys, "argv", ["pretrain_own_images.py", *argv])
    runpy.run_path(str(ROOT / "examples" / "pretrain_own_images.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "init: encoder, decoder and masking module from vit_t_fmnist" in out
    assert "image folder" in out and "200 images" in out and "features: (200, 192) for 200 files" in out
    # The run started from the bundled weights and moved away from them: its export differs from the start.
    start, continued = clmae.load_pretrained("vit_t_fmnist"), clmae.load_pretrained(work / "run" / "export")
    changed = [k for k, v in start.state_dict().items() if not torch.equal(v, continued.state_dict()[k])]
    assert changed and "init" in json.loads((work / "run" / "export" / "train_config.json").read_text())
    top1 = {}
    for name in ("continued", "start"):
        metrics = json.loads((work / f"knn_{name}.json").read_text())["metrics"]
        assert 0.3 < metrics["weighted"]["top1"] <= 1.0  # ten classes: far above chance
        top1[name] = metrics["weighted"]["top1"]
    # The closing line compares the two and says how large noise is: sqrt(p (1 - p) / 100) on the 100 val images.
    delta, se = 100 * (top1["continued"] - top1["start"]), 100 * (top1["start"] * (1 - top1["start"]) / 100) ** 0.5
    assert f"top-1 by {delta:+.1f} points; one standard error on 100 validation images is {se:.1f} points" in out
    assert "has nothing new to learn" in out
