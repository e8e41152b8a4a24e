"""The feature cache recovers from damaged entries; the evaluation transform matches timm's for a model's config."""

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from clmae.data.transforms.pil import eval_transform_for
from clmae.eval import resolve_data, resolve_model
from clmae.eval.cache import features_for

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}
LIMITS = {"train_limit": 40, "val_limit": 20}


@pytest.fixture(scope="module")
def model_and_data():
    return resolve_model("vit_tiny_patch4_28", overrides=TINY, init_seed=0), resolve_data("fmnist-sample")


def _same_features(a, b) -> bool:
    return all(
        torch.equal(x[p], y[p]) for x, y in ((a.train, b.train), (a.val, b.val)) for p in ("cls", "avg")
    ) and torch.equal(a.train_labels, b.train_labels)


def _damage_truncate(path):
    path.write_bytes(path.read_bytes()[:200])


def _damage_drop_key(path):
    t = load_file(path)
    del t["val_avg"]
    save_file(t, path)


def _damage_lengths(path):
    t = load_file(path)
    t["train_labels"] = t["train_labels"][:-3].contiguous()
    save_file(t, path)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(_damage_truncate, "cannot be read"), (_damage_drop_key, "lacks val_avg"), (_damage_lengths, "lengths")],
)
def test_a_damaged_cache_entry_is_deleted_and_recomputed(tmp_path, capsys, model_and_data, damage, reason):
    model, data = model_and_data
    first = features_for(model, data, cache_dir=tmp_path, **LIMITS)
    path = tmp_path / first.cache_file.rsplit("/", 1)[1]
    assert path.is_file() and capsys.readouterr().err == ""
    damage(path)
    again = features_for(model, data, cache_dir=tmp_path, **LIMITS)
    err = capsys.readouterr().err
    assert err.count("feature cache entry") == 1 and reason in err and "extracting again" in err
    assert _same_features(again, first)
    # The entry was written anew, whole: the next run reads it silently, and no temporary file is left.
    third = features_for(model, data, cache_dir=tmp_path, **LIMITS)
    assert _same_features(third, first) and capsys.readouterr().err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_cache_entry_is_written_through_a_per_process_temporary_file(tmp_path, monkeypatch, model_and_data):
    import os

    from clmae import _atomic

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(_atomic.os, "replace", lambda a, b: (replaced.append((a, b)), real_replace(a, b))[1])
    fs = features_for(*model_and_data, cache_dir=tmp_path, **LIMITS)
    target = tmp_path / fs.cache_file.rsplit("/", 1)[1]
    assert replaced == [(tmp_path / f".{target.name}.tmp{os.getpid()}", target)]  # this process's own temporary


def _image(size: int) -> Image.Image:
    rng = np.random.default_rng(size)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB")


# vit_tiny_patch4_28's config (bilinear) on larger images, where the resize is not a no-op; a config without mean and
# std (ImageNet's); a 224 config with crop_pct 0.875.
CONFIGS = [
    {"input_size": (1, 28, 28), "interpolation": "bilinear", "mean": (0.286,), "std": (0.353,), "crop_pct": 1.0},
    {"input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 1.0},
    {"input_size": (3, 224, 224), "interpolation": "bicubic", "mean": (0.5,) * 3, "std": (0.5,) * 3, "crop_pct": 0.875},
]


@pytest.mark.parametrize("cfg", CONFIGS)
def test_eval_transform_matches_timms(cfg):
    # An independent implementation: timm's evaluation transform built from the same data config.
    timm_tf = timm.data.create_transform(**cfg, is_training=False)
    ours = eval_transform_for(cfg)
    for size in (40, 300):
        img = _image(size).convert("L" if cfg["input_size"][0] == 1 else "RGB")
        a, b = ours(img), timm_tf(img)
        assert a.shape == cfg["input_size"] and torch.equal(a, b)


def test_eval_transform_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="square"):
        eval_transform_for({"input_size": (3, 32, 48), "crop_pct": 1.0})
    with pytest.raises(ValueError, match="crop_mode 'squash'"):
        eval_transform_for({"input_size": (3, 32, 32), "crop_mode": "squash"})
