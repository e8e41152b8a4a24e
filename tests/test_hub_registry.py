"""The weights registry: manifest validity, names, statuses and the errors users see."""

import json
from pathlib import Path

import pytest

import clmae
from clmae.hub import list_pretrained, load_pretrained, registry

ROOT = Path(__file__).resolve().parents[1]


def test_one_manifest_read_from_a_checkout_as_from_an_install(monkeypatch):
    monkeypatch.delenv("CLMAE_WEIGHTS_MANIFEST", raising=False)
    assert registry.manifest_path() == ROOT / "clmae" / "hub" / "manifest.json"
    copies = [p for p in ROOT.rglob("manifest.json") if ".venv" not in p.parts and "build" not in p.parts]
    assert copies == [ROOT / "clmae" / "hub" / "manifest.json"]


def test_aliases_are_symmetric_between_the_methods():
    for e in registry.entries():
        prefixed = [a for a in e.aliases if a.startswith(f"{e.method}_")]
        assert prefixed, f"{e.name} ({e.method}) has no {e.method}_ alias: {e.aliases}"
        other = "mae" if e.method == "clmae" else "clmae"
        assert not any(a.startswith(f"{other}_") for a in e.aliases)
    assert registry.get_weight("clmae_vit_t_fmnist") is registry.get_weight("vit_t_fmnist")
    assert registry.get_weight("mae_vit_t_fmnist").method == "mae"


def test_manifest_entries():
    entries = {e.name: e for e in registry.entries()}
    # MAE's ImageNet encoders as timm hosts them: not pinned (no commit id or sha256 recorded).
    for arch in ("vit_base_patch16_224", "vit_large_patch16_224", "vit_huge_patch14_224"):
        e = entries[f"{arch}.mae"]
        assert e.hub_repo == f"timm/{arch}.mae" and e.method == "mae" and e.license == "cc-by-nc-4.0"
        assert e.status == "unverified" and e.revision == "main" and not e.pinned
        assert all(v is None for v in e.files.values())
    vit_b = entries["vit_base_patch16_224.clmae_in1k"]
    assert vit_b.alias == "vit_b" and vit_b.status == "not yet published" and vit_b.method == "clmae"
    # Nothing is labelled CL-MAE unless it is one.
    assert all(e.method == "mae" for e in entries.values() if e.hub_repo and e.hub_repo.startswith("timm/"))


def test_list_pretrained():
    # Names, as timm's list_pretrained; the status is the entry's.
    assert list_pretrained("*mae") == [
        "vit_base_patch16_224.mae",
        "vit_huge_patch14_224.mae",
        "vit_large_patch16_224.mae",
    ]
    assert list_pretrained("vit_b") == ["vit_base_patch16_224.clmae_in1k"]
    assert clmae.get_weight("vit_b").status == "not yet published"
    assert list_pretrained(status="published") == []
    assert list_pretrained(status="bundled") == ["vit_tiny_patch4_28.clmae_fmnist", "vit_tiny_patch4_28.mae_fmnist"]
    with pytest.raises(ValueError, match="unknown pretrained weight 'vit_bb'"):
        clmae.get_weight("vit_bb")
    with pytest.raises(ValueError, match="status must be one of"):
        list_pretrained(status="done")


def test_not_yet_published_error_says_what_to_do():
    with pytest.raises(ValueError) as info:
        load_pretrained("vit_b")
    msg = str(info.value)
    assert "not yet published" in msg
    assert "clmae train --recipe clmae_vit_b16_in1k" in msg
    assert "vit_base_patch16_224.mae" in msg and "vit_large_patch16_224.mae" in msg  # what is available


def test_unknown_and_ambiguous_names():
    with pytest.raises(ValueError, match=r"Did you mean: vit_base_patch16_224\.mae"):
        load_pretrained("vit_base_patch16_224.mea")
    with pytest.raises(ValueError, match="several pretrained weights"):
        load_pretrained("vit_base_patch16_224")
    with pytest.raises(FileNotFoundError, match="not a folder"):
        load_pretrained("./no/such/folder")
    with pytest.raises(FileNotFoundError, match="write hf-hub:someorg/somerepo"):
        load_pretrained("someorg/somerepo")
    with pytest.raises(ValueError, match="hf-hub:org/repo"):
        load_pretrained("hf-hub:justaname")


def _write_manifest(tmp_path, monkeypatch, weights):
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"format": 1, "weights": weights}))
    monkeypatch.setenv("CLMAE_WEIGHTS_MANIFEST", str(path))
    return path


def test_manifest_validation(tmp_path, monkeypatch):
    base = dict(name="vit_tiny_patch4_28.x", alias=None, method="clmae", arch="vit_tiny_patch4_28", hub_repo="o/r")
    _write_manifest(tmp_path, monkeypatch, [{**base, "revision": "main", "files": {"a": "00"}, "status": "published"}])
    with pytest.raises(ValueError, match="'published' but is not pinned"):
        registry.entries()
    monkeypatch.setenv("CLMAE_WEIGHTS_MANIFEST", str(tmp_path / "m2.json"))
    (tmp_path / "m2.json").write_text(json.dumps({"weights": [{**base, "revision": None, "status": "old"}]}))
    with pytest.raises(ValueError, match="status 'old'"):
        registry.entries()
    monkeypatch.setenv("CLMAE_WEIGHTS_MANIFEST", str(tmp_path / "m3.json"))
    (tmp_path / "m3.json").write_text(json.dumps({"weights": [{**base, "revision": None, "sha": 1}]}))
    with pytest.raises(ValueError, match="malformed"):
        registry.entries()
