"""The weights registry: manifest validity, names, statuses and the errors users see."""

import json
from pathlib import Path

import pytest

from clmae.hub import list_pretrained, load_pretrained, registry

ROOT = Path(__file__).resolve().parents[1]


def test_packaged_manifest_is_the_reviewed_one():
    assert (ROOT / "clmae" / "hub" / "manifest.json").read_bytes() == (ROOT / "weights" / "manifest.json").read_bytes()


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
    assert list_pretrained("*mae") == [
        ("vit_base_patch16_224.mae", "unverified"),
        ("vit_huge_patch14_224.mae", "unverified"),
        ("vit_large_patch16_224.mae", "unverified"),
    ]
    assert list_pretrained("vit_b") == [("vit_base_patch16_224.clmae_in1k", "not yet published")]
    assert list_pretrained(status="published") == []
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
