"""clmae extract (and its CLI wiring): features of a folder of images, checked against a manual computation."""

import argparse
import json

import numpy as np
import pytest
import torch
from conftest import tiny_pretrainer
from PIL import Image
from safetensors import safe_open

from clmae.eval.cli import register as register_eval
from clmae.hub import save_pretrained
from clmae.hub.cli import register as register_hub


def _run(argv):
    parser = argparse.ArgumentParser(prog="clmae")
    sub = parser.add_subparsers(dest="command", required=True)
    register_eval(sub)  # extract
    register_hub(sub)  # pretrained
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture
def model_dir(tmp_path):
    model = tiny_pretrainer(seed=2).eval()
    return save_pretrained(model, tmp_path / "weights"), model.encoder


@pytest.fixture
def image_dir(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "images"
    (root / "sub").mkdir(parents=True)
    arrays = {}
    for name in ("b.png", "a.png", "sub/c.png", "sub/d.jpg"):
        arr = rng.integers(0, 256, (28, 28), dtype=np.uint8)
        img = Image.fromarray(arr)
        img.save(root / name)
        arrays[name] = np.array(Image.open(root / name))  # what is on disk (JPEG is lossy)
    (root / "notes.txt").write_text("not an image")
    return root, arrays


def test_extract_matches_manual_features(model_dir, image_dir, tmp_path, capsys):
    folder, encoder = model_dir
    root, arrays = image_dir
    rc = _run(
        [
            "extract",
            str(folder),
            str(root),
            str(tmp_path / "feats"),
            "--features",
            "pooled,avg,patch",
            "--batch-size",
            "3",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0 and "wrote" in capsys.readouterr().out
    with safe_open(tmp_path / "feats.safetensors", "pt") as f:
        files = json.loads(f.metadata()["files"])
        got = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    assert files == ["a.png", "b.png", "sub/c.png", "sub/d.jpg"]
    # Preprocessing by hand: the folder's config says 28x28, no crop, mean 0.2860, std 0.3530.
    x = torch.stack([torch.from_numpy(arrays[n]).float().div(255).sub(0.2860).div(0.3530)[None] for n in files])
    with torch.no_grad():
        tokens = encoder.forward_features(x)
    assert got["pooled"].shape == (4, 32) and got["patch"].shape == (4, 49, 32)
    torch.testing.assert_close(got["pooled"], tokens[:, 0], rtol=1e-5, atol=1e-5)  # token pooling: the CLS
    torch.testing.assert_close(got["avg"], tokens[:, 1:].mean(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got["patch"], tokens[:, 1:], rtol=1e-5, atol=1e-5)


def test_extract_errors(model_dir, image_dir, tmp_path):
    folder, _ = model_dir
    root, _ = image_dir
    with pytest.raises(ValueError, match="features must be among"):
        _run(["extract", str(folder), str(root), str(tmp_path / "o"), "--features", "mean", "--quiet"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images found"):
        _run(["extract", str(folder), str(tmp_path / "empty"), str(tmp_path / "o")])
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"broken\.png"):
        _run(["extract", str(folder), str(root), str(tmp_path / "o"), "--quiet"])


def test_pretrained_command(capsys):
    assert _run(["pretrained", "*mae"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all("unverified" in line and "timm/" in line for line in out)
    assert _run(["pretrained", "*fmnist"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(" bundled " in line for line in out)
    assert len({line.index(" bundled ") for line in out}) == 1  # columns line up


@pytest.mark.parametrize("option", [["skip_unreadable=true"], ["--skip-unreadable"]])
def test_extract_skips_unreadable_files_as_train_does(model_dir, image_dir, tmp_path, capsys, option):
    folder, _ = model_dir
    root, _ = image_dir
    (root / "broken.png").write_bytes(b"\x89PNG not really")
    (root / "sub" / "cut.jpg").write_bytes((root / "sub" / "d.jpg").read_bytes()[:200])
    assert _run(["extract", str(folder), str(root), str(tmp_path / "o"), *option, "--quiet"]) == 0
    assert f"4 images in {root} (2 unreadable left out)" in capsys.readouterr().out
    with safe_open(tmp_path / "o.safetensors", "pt") as f:
        assert json.loads(f.metadata()["files"]) == ["a.png", "b.png", "sub/c.png", "sub/d.jpg"]
        assert f.get_tensor("pooled").shape == (4, 32)
