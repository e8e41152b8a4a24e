"""The zoo's bundled Fashion-MNIST weights: integrity, offline loading, and golden outputs that catch any refactor
that changes what they compute."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import clmae
from clmae._files import sha256_file
from clmae.data import SAMPLE_ROOT, load_fashion_mnist, to_float
from clmae.hub import load_pretrained, load_pretraining_model, registry
from clmae.hub.download import ChecksumError
from clmae.hub.load import resolve

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = [e for e in registry.entries() if e.status == registry.BUNDLED]
NAMES = [e.name for e in BUNDLED]


def test_there_are_bundled_cl_mae_and_mae_weights_of_the_same_architecture():
    by_method = {e.method: e for e in BUNDLED}
    assert {"clmae", "mae"} <= set(by_method)
    assert by_method["clmae"].arch == by_method["mae"].arch == "vit_tiny_patch4_28"
    assert by_method["clmae"].recipe == by_method["mae"].recipe
    # both were trained by the same command apart from --method
    configs = [json.loads((ROOT / "weights" / by_method[m].name / "train_config.json").read_text()) for m in by_method]
    diff = {k for k in configs[0] if configs[0][k] != configs[1].get(k)}
    assert diff <= {"method", "out"}, diff


@pytest.mark.parametrize("name", NAMES)
def test_bundled_files_match_the_registry_and_are_the_only_copy(name):
    entry = registry.find(name)
    folder = registry.bundled_folder(entry)
    assert folder == ROOT / "clmae" / "hub" / "bundled" / name
    # each tensor stored once: the encoder is the encoder.* part of the whole model's file
    assert set(entry.files) == {"config.json", "pretraining.safetensors"}
    assert not (folder / "model.safetensors").exists()
    records = ROOT / "weights" / name  # what documents the weight, never the weight files themselves
    for filename, sha in entry.files.items():
        assert sha256_file(folder / filename) == sha
        assert not (records / filename).exists()
    assert {"README.md", "golden.safetensors", "metrics.jsonl", "train_config.json"} <= {
        f.name for f in records.iterdir()
    }
    card = (records / "README.md").read_text()  # the model card lists the bundled files' sha256
    assert all(f"| `{filename}` | `{sha}` |" in card for filename, sha in entry.files.items())
    assert entry.license == "apache-2.0"
    assert set(entry.metrics) >= {"fmnist_test_knn_reference_top1", "fmnist_test_linear_top1"}


@pytest.mark.parametrize("name", NAMES)
def test_golden_outputs(name, one_thread):
    """Fixed input -> stored outputs. A change to the model code, the loader or the preprocessing fails here."""
    golden = load_file(ROOT / "weights" / name / "golden.safetensors")  # outputs of the bundled files, at publishing
    x = golden["input"]
    assert x.shape == (8, 1, 28, 28)
    # the stored input is the first eight bundled test images, normalised as the model expects
    images, _ = load_fashion_mnist("test", root=SAMPLE_ROOT)
    torch.testing.assert_close(x, to_float(images[:8]))

    encoder = load_pretrained(name)  # from the package, sha256-checked, no network
    with torch.no_grad():
        features = encoder.forward_features(x)
        pooled = encoder(x)
    torch.testing.assert_close(features, golden["features"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pooled, golden["pooled"], atol=1e-4, rtol=1e-4)
    # features carry information: different garments give clearly different features
    assert torch.cdist(pooled, pooled).fill_diagonal_(float("inf")).min() > 0.1

    model = load_pretraining_model(name)
    torch.testing.assert_close(model.encoder.state_dict()["pos_embed"], encoder.state_dict()["pos_embed"])
    if "scores" in golden:
        with torch.no_grad():
            scores = model.masker(model.embed(x))
        torch.testing.assert_close(scores, golden["scores"], atol=1e-4, rtol=1e-4)
    else:
        assert model.masker is None


@pytest.mark.slow
def test_bundled_weights_are_stored_in_float16_and_load_as_float32():
    name = next(e.name for e in BUNDLED if e.method == "clmae")
    folder = registry.bundled_folder(registry.find(name))
    whole = load_file(folder / "pretraining.safetensors")
    stored = {k.removeprefix("encoder."): v for k, v in whole.items() if k.startswith("encoder.")}
    assert {v.dtype for v in whole.values()} == {torch.float16}
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["clmae"]["storage_dtype"] == "float16" and cfg["clmae"]["method"] == "clmae"
    encoder = load_pretrained(name)
    for k, v in encoder.state_dict().items():
        assert v.dtype == torch.float32
        assert torch.equal(v, stored[k].float())  # the upcast is exact


@pytest.mark.slow
def test_alias_and_create_model_load_the_bundled_weight_without_network(monkeypatch):
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("a bundled weight must load without opening a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    a = load_pretrained("vit_t_fmnist")
    b = clmae.create_model("vit_tiny_patch4_28.clmae_fmnist", pretrained=True)
    assert a.pretrained_cfg["tag"] == "clmae_fmnist" and a.pretrained_cfg["method"] == "clmae"
    assert "hf_hub_id" not in a.pretrained_cfg
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    with pytest.raises(ValueError, match="several pretrained weights"):
        load_pretrained("vit_tiny_patch4_28")
    with pytest.raises(ValueError, match="no Hub revision"):
        load_pretrained("vit_t_fmnist", revision="main")


@pytest.mark.slow
def test_a_damaged_bundled_file_is_refused(tmp_path, monkeypatch):
    entry = registry.find("vit_t_fmnist")
    copy = tmp_path / entry.name
    shutil.copytree(registry.bundled_folder(entry), copy)
    monkeypatch.setattr(registry, "BUNDLED_ROOT", tmp_path)
    load_pretrained("vit_t_fmnist")  # the intact copy loads
    data = bytearray((copy / "pretraining.safetensors").read_bytes())
    data[-100] ^= 0xFF  # one flipped byte inside a tensor
    (copy / "pretraining.safetensors").write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"damaged.*reinstall clmae"):
        load_pretrained("vit_t_fmnist")
    with pytest.raises(ChecksumError, match=r"damaged.*reinstall clmae"):
        load_pretraining_model("vit_t_fmnist")
    (copy / "pretraining.safetensors").unlink()
    for load in (load_pretrained, load_pretraining_model):
        with pytest.raises(FileNotFoundError, match="lacks a file of the bundled weight"):
            load("vit_t_fmnist")
    source = resolve("vit_t_fmnist")
    (copy / "extra.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match=r"lists no sha256 for extra\.safetensors"):
        source.file("extra.safetensors", None, None)


def test_registry_refuses_a_bundled_entry_without_checksums(tmp_path, monkeypatch):
    entry = json.loads((ROOT / "clmae" / "hub" / "manifest.json").read_text())["weights"][0]
    assert entry["status"] == "bundled"
    entry["files"] = {**entry["files"], "pretraining.safetensors": None}
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format": 1, "weights": [entry]}))
    monkeypatch.setenv("CLMAE_WEIGHTS_MANIFEST", str(path))
    with pytest.raises(ValueError, match="'bundled' but not every file has a sha256"):
        registry.entries()


def test_published_results_are_the_evaluations_on_record():
    """The registry's metrics are those of the evaluation files kept in weights/fmnist_results (seed 0)."""
    results = ROOT / "weights" / "fmnist_results"
    summary = json.loads((results / "summary.json").read_text())
    for e in BUNDLED:
        knn = json.loads((results / "eval" / f"{e.method}_s0.knn.json").read_text())
        linear = json.loads((results / "eval" / f"{e.method}_s0.linear.json").read_text())
        assert e.metrics["fmnist_test_knn_reference_top1"] == pytest.approx(knn["metrics"]["reference"]["top1"])
        assert e.metrics["fmnist_test_knn_weighted_top1"] == pytest.approx(knn["metrics"]["weighted"]["top1"])
        assert e.metrics["fmnist_test_linear_top1"] == pytest.approx(linear["metrics"]["top1"])
        assert knn["data"]["val_size"] == 10_000 and knn["data"]["train_size"] == 60_000
    for row in summary["results"].values():  # mean and std recomputed from the per-seed values
        for m in (v for k, v in row.items() if k != "models"):
            n = len(m["values"])
            mean = sum(m["values"]) / n
            assert m["mean"] == pytest.approx(mean)
            if n > 1:
                assert m["std"] == pytest.approx((sum((v - mean) ** 2 for v in m["values"]) / (n - 1)) ** 0.5)


@pytest.mark.slow
def test_demo_refuses_a_weight_without_masking_module(tmp_path):
    from clmae.demo import run_demo

    with pytest.raises(ValueError, match=r"no masking module.*give a CL-MAE weight"):
        run_demo(tmp_path / "demo", weights="mae_vit_t_fmnist")
    assert not (tmp_path / "demo").exists()  # nothing written
