"""Downloads through the real huggingface_hub client against a loopback Hub, and hand-made offline caches."""

import hashlib
import json
import warnings

import pytest
import timm
import torch
from _hub_server import go_offline, make_cache, serve
from conftest import tiny_pretrainer
from safetensors.torch import load_file

import clmae.hub.load as hub_load
from clmae.hub import ChecksumError, load_pretrained, load_pretraining_model, save_pretrained

REPO = "clmae-test/vit_tiny_patch4_28.fmnist"
# Loading the pinned repository by hf-hub:name (unpinned) warns; the tests that do it on purpose expect that.
pytestmark = pytest.mark.filterwarnings("ignore:.*so no sha256 is checked:UserWarning")


@pytest.fixture
def folder(tmp_path):
    model = tiny_pretrainer(seed=5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return save_pretrained(model.eval(), tmp_path / "export")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    hub = serve(monkeypatch, tmp_path / "hf-cache")
    yield hub
    hub.stop()


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(tmp_path, monkeypatch, folder, commit, status="published", files=("config.json", "model.safetensors")):
    entry = dict(
        name="vit_tiny_patch4_28.fmnist",
        alias="tiny_f",
        method="clmae",
        arch="vit_tiny_patch4_28",
        hub_repo=REPO,
        revision=commit if status == "published" else "main",
        files={f: (_sha(folder / f) if status == "published" else None) for f in files},
        license="apache-2.0",
        dataset="fashion_mnist",
        status=status,
    )
    path = tmp_path / f"manifest-{status}.json"
    path.write_text(json.dumps({"format": 1, "weights": [entry]}))
    monkeypatch.setenv("CLMAE_WEIGHTS_MANIFEST", str(path))


def _assert_same_encoder(model, folder):
    ref = load_file(folder / "model.safetensors")
    got = model.state_dict()
    assert set(got) == set(ref)
    for k, v in ref.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k


def test_serve_and_load_bit_identical(hub, folder, tmp_path, monkeypatch):
    commit = hub.add_folder(REPO, folder)
    _manifest(tmp_path, monkeypatch, folder, commit)
    model = load_pretrained("tiny_f", cache_dir=tmp_path / "c1")
    _assert_same_encoder(model, folder)
    assert model.pretrained_cfg["hf_hub_id"] == REPO and model.pretrained_cfg["revision"] == commit
    assert model.pretrained_cfg["tag"] == "fmnist"
    # Pinned: asked for the registry's commit, not a branch.
    assert ("GET", f"/{REPO}/resolve/{commit}/model.safetensors") in hub.requests
    # hf-hub: names, at a branch and at a commit
    _assert_same_encoder(load_pretrained(f"hf-hub:{REPO}", cache_dir=tmp_path / "c2"), folder)
    _assert_same_encoder(load_pretrained(f"hf-hub:{REPO}@{commit}", cache_dir=tmp_path / "c3"), folder)


def test_timm_hf_hub_loads_the_same_encoder(hub, folder):
    hub.add_folder(REPO, folder)
    model = timm.create_model(f"hf-hub:{REPO}", pretrained=True)
    _assert_same_encoder(model, folder)
    assert tuple(model.pretrained_cfg["input_size"]) == (1, 28, 28)  # timm <= 1.0.29 keeps the JSON list


def test_pretraining_model_from_hub(hub, folder, tmp_path, monkeypatch, images):
    commit = hub.add_folder(REPO, folder)
    _manifest(
        tmp_path, monkeypatch, folder, commit, files=("config.json", "model.safetensors", "pretraining.safetensors")
    )
    full = load_pretraining_model("tiny_f", cache_dir=tmp_path / "c")
    ref = load_file(folder / "pretraining.safetensors")
    assert all(torch.equal(full.state_dict()[k], v) for k, v in ref.items())


def test_pinned_entry_refuses_unlisted_files(hub, folder, tmp_path, monkeypatch):
    commit = hub.add_folder(REPO, folder)
    _manifest(tmp_path, monkeypatch, folder, commit)  # lists config.json and model.safetensors only
    with pytest.raises(ValueError, match=r"no sha256 for pretraining\.safetensors"):
        load_pretraining_model("tiny_f", cache_dir=tmp_path / "c")
    assert not [r for r in hub.requests if "pretraining" in r[1]]


def test_tampered_file_is_rejected_and_never_loaded(hub, folder, tmp_path, monkeypatch):
    commit = hub.add_folder(REPO, folder)
    _manifest(tmp_path, monkeypatch, folder, commit)
    data = bytearray(hub.repos[REPO][commit]["model.safetensors"])
    data[-1] ^= 0x01  # one bit of one weight
    hub.repos[REPO][commit]["model.safetensors"] = bytes(data)
    read = []
    monkeypatch.setattr(hub_load, "read_safetensors", lambda p: read.append(p) or pytest.fail("loaded a bad file"))
    with pytest.raises(ChecksumError, match="the file was not loaded"):
        load_pretrained("tiny_f", cache_dir=tmp_path / "c")
    assert read == []


def test_other_revision_than_the_pin_warns_and_skips_checksums(hub, folder, tmp_path, monkeypatch):
    pinned = hub.add_folder(REPO, folder)
    _manifest(tmp_path, monkeypatch, folder, pinned)
    hub.commit(REPO, {**hub.repos[REPO][pinned], "extra.txt": b"x"}, branch="dev")  # same weights, new commit
    with pytest.warns(UserWarning, match="differs from the registry's pinned"):
        model = load_pretrained("tiny_f", revision="dev", cache_dir=tmp_path / "c")
    _assert_same_encoder(model, folder)
    assert model.pretrained_cfg["revision"] == "dev"


def test_unverified_entry_warns(hub, folder, tmp_path, monkeypatch):
    hub.add_folder(REPO, folder)
    _manifest(tmp_path, monkeypatch, folder, None, status="unverified")
    with pytest.warns(UserWarning, match="is not pinned"):
        model = load_pretrained("tiny_f", cache_dir=tmp_path / "c")
    _assert_same_encoder(model, folder)


def test_missing_repo_and_file(hub, folder, tmp_path):
    hub.add_folder(REPO, folder)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_pretrained("hf-hub:clmae-test/nothing", cache_dir=tmp_path / "c")
    hub.commit("clmae-test/config-only", {"config.json": (folder / "config.json").read_bytes()})
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors not found"):
        load_pretrained("hf-hub:clmae-test/config-only", cache_dir=tmp_path / "c")


def test_offline_warm_cache_makes_no_request(hub, folder, tmp_path, monkeypatch):
    commit = hub.add_folder(REPO, folder)
    _manifest(tmp_path, monkeypatch, folder, commit)
    load_pretrained("tiny_f", cache_dir=tmp_path / "c")  # warm the cache: the pinned commit...
    load_pretrained(f"hf-hub:{REPO}", cache_dir=tmp_path / "c")  # ...and the branch (it records refs/main)
    hub.requests.clear()
    load_pretrained("tiny_f", cache_dir=tmp_path / "c")  # pinned to a commit and cached: no request even online
    assert hub.requests == []
    go_offline(monkeypatch)
    _assert_same_encoder(load_pretrained("tiny_f", cache_dir=tmp_path / "c"), folder)
    _assert_same_encoder(load_pretrained(f"hf-hub:{REPO}", cache_dir=tmp_path / "c"), folder)
    assert hub.requests == []


def test_offline_cache_miss_fails_at_once(hub, folder, tmp_path, monkeypatch):
    commit = hub.add_folder(REPO, folder)
    _manifest(tmp_path, monkeypatch, folder, commit)
    go_offline(monkeypatch)
    # One command fetches every file the loader needs, not one file per failure.
    command = f"hf download {REPO} config.json model.safetensors --revision {commit}"
    with pytest.raises(FileNotFoundError, match=command):
        load_pretrained("tiny_f", cache_dir=tmp_path / "empty")
    assert hub.requests == []


def test_local_files_only_miss_makes_no_request(hub, folder, tmp_path):
    hub.add_folder(REPO, folder)
    with pytest.raises(FileNotFoundError, match="not in the local Hub cache"):
        load_pretrained(f"hf-hub:{REPO}", cache_dir=tmp_path / "c", local_files_only=True)
    assert hub.requests == []


def test_hand_made_cache(folder, tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = make_cache(tmp_path / "cache", REPO, commit, folder)
    _manifest(tmp_path, monkeypatch, folder, commit)
    go_offline(monkeypatch)
    _assert_same_encoder(load_pretrained("tiny_f", cache_dir=tmp_path / "cache"), folder)
    _assert_same_encoder(load_pretrained(f"hf-hub:{REPO}", cache_dir=tmp_path / "cache"), folder)  # via refs/main
    (snap / "model.safetensors").write_bytes((snap / "model.safetensors").read_bytes()[:-8])  # truncated in cache
    with pytest.raises(ChecksumError):
        load_pretrained("tiny_f", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="truncated or corrupt"):  # no registry sha256: safetensors itself refuses
        load_pretrained(f"hf-hub:{REPO}", cache_dir=tmp_path / "cache")


def test_hf_hub_name_of_a_pinned_repo_warns_unless_pinned(hub, folder, tmp_path, monkeypatch):
    pinned = hub.add_folder(REPO, folder)
    _manifest(tmp_path, monkeypatch, folder, pinned)
    with pytest.warns(UserWarning, match="so no sha256 is checked"):
        load_pretrained(f"hf-hub:{REPO}", cache_dir=tmp_path / "c")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = load_pretrained(f"hf-hub:{REPO}@{pinned}", cache_dir=tmp_path / "c")  # the pin: verified, silent
    _assert_same_encoder(model, folder)
