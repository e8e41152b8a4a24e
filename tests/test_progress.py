"""Long loops leave plain progress lines in a log (stderr not a terminal), and nothing when they are quick."""

from __future__ import annotations

import re

import pytest
import torch
from torch.utils.data import TensorDataset

import clmae._progress as prog
from clmae._progress import EpochLog, progress
from clmae.eval.features import extract_features
from clmae.eval.linear import LinearProbeConfig, linear_probe_cached

pytestmark = pytest.mark.usefixtures("one_thread")


def test_progress_lines_when_not_a_terminal(capsys):
    assert list(progress(range(4), "features", every=0)) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert [re.sub(r", \d+ s$", "", x) for x in lines] == [
        "features: 1/4 batches (25%)",
        "features: 2/4 batches (50%)",
        "features: 3/4 batches (75%)",
        "features: 4/4 batches (100%)",
        "features: done, 4 batches in 0 s",
    ]


def test_quick_or_untitled_loops_print_nothing(capsys):
    assert list(progress(iter("abc"), "quick", every=3600)) == ["a", "b", "c"]
    assert list(progress(range(3), None, every=0)) == [0, 1, 2]
    assert capsys.readouterr().err == ""


def test_progress_without_a_length(capsys):
    list(progress((i for i in range(2)), "stream", every=0))
    assert capsys.readouterr().err.splitlines()[0].startswith("stream: 1 batches, ")


def test_epoch_log(capsys):
    log = EpochLog("linear probe", 3, every=0)
    for epoch, loss in enumerate([2.5, 1.25, 0.5]):
        log(epoch, loss)
    lines = [re.sub(r", \d+ s$", "", x) for x in capsys.readouterr().err.splitlines()]
    assert lines == [
        "linear probe: epoch 1/3, train loss 2.5000",
        "linear probe: epoch 2/3, train loss 1.2500",
        "linear probe: epoch 3/3, train loss 0.5000",
    ]
    quiet = EpochLog("x", 2, every=3600)
    quiet(0, 1.0)
    quiet(1, 1.0)
    assert capsys.readouterr().err == ""


def test_extraction_and_linear_probe_log_progress(capsys, monkeypatch):
    monkeypatch.setattr(prog, "EVERY_S", 0.0)  # every batch / epoch is "30 s later"
    data = TensorDataset(torch.rand(10, 3, 4, 4), torch.arange(10) % 2)
    feats, labels = extract_features(None, data, batch_size=4, desc="features (train)", features=("avg",))
    assert feats["avg"].shape == (10, 48) and labels.tolist() == [0, 1] * 5
    err = capsys.readouterr().err
    assert "features (train): 3/3 batches (100%)" in err and "features (train): done, 3 batches" in err

    x, y = torch.randn(16, 5), torch.arange(16) % 2
    linear_probe_cached(x, y, x, y, 2, LinearProbeConfig(epochs=2, warmup_epochs=1, batch_size=8))
    err = capsys.readouterr().err
    assert "linear probe: epoch 1/2, train loss " in err and "linear probe: epoch 2/2" in err


def test_finetune_logs_batches_and_epochs(capsys, monkeypatch):
    from clmae.eval import resolve_model
    from clmae.eval.finetune import FinetuneConfig, finetune

    monkeypatch.setattr(prog, "EVERY_S", 0.0)
    model = resolve_model("vit_tiny_patch4_28", overrides={"embed_dim": 16, "depth": 1, "num_heads": 2}, init_seed=0)
    data = TensorDataset(torch.randn(8, 1, 28, 28), torch.arange(8) % 2)
    cfg = FinetuneConfig(epochs=2, warmup_epochs=1, batch_size=4, mixup=0, cutmix=0, smoothing=0, drop_path=0)
    finetune(model, data, data, 2, cfg, "cpu")
    err = capsys.readouterr().err
    assert "fine-tune epoch 2/2: 2/2 batches (100%)" in err  # 8 images, batch 4
    assert "fine-tune: epoch 1/2, train loss " in err and "fine-tune: epoch 2/2, train loss " in err
