"""The CL-MAE vs MAE comparison: its recipes, how it sizes the runs, the partial results it keeps at a deadline, and
a smoke run of the whole one-call script on the CPU."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from clmae.train import trainer
from clmae.train.config import TrainConfig, load_recipe
from tools.zoo import fmnist, publish, report

ROOT = Path(__file__).resolve().parents[1]


def test_the_two_recipes_differ_only_in_method_and_follow_the_reference_schedule():
    clmae, mae = load_recipe("clmae_fmnist"), load_recipe("mae_fmnist")
    assert {k for k in clmae.keys() | mae.keys() if clmae.get(k) != mae.get(k)} == {"method", "recipe"}
    cfg = TrainConfig.from_dict(clmae).validate()
    assert cfg.data == "fmnist" and cfg.augment is True and cfg.batch_size == 256 and cfg.accum_iter == 1
    assert cfg.warmup_epochs / cfg.epochs == 40 / 200  # the reference's warm-up share
    assert (cfg.method, TrainConfig.from_dict(mae).method) == ("clmae", "mae")


def _args(**kw) -> argparse.Namespace:
    values = {"data": "fmnist-sample", "batch_size": 256, "max_batch_size": 1024, "train_seconds": 100.0}
    return argparse.Namespace(**{**values, "safety": 1.0, "min_epochs": 50, "max_epochs": 200, **kw})


def test_the_schedule_grows_the_batch_until_the_aimed_epochs_fit(monkeypatch, tmp_path):
    rates = {256: 300.0, 512: 520.0, 1024: 900.0}  # images/s per run at each batch
    tried = []

    def fake(args, methods, batch, out, deadline):
        tried.append(batch)
        return rates[batch]

    monkeypatch.setattr(fmnist, "calibrate", fake)
    monkeypatch.setattr(fmnist, "_train_images", lambda spec: 1000)
    # 100 s x 520 img/s / 1000 images = 52 epochs at 512: the first batch that reaches 50
    choice = fmnist.choose_schedule(_args(), ["clmae", "mae"], tmp_path, 1e12)
    assert (choice["batch_size"], choice["epochs"], tried) == (512, 52, [256, 512])
    assert choice["calibration"][256] == {"images_per_s_per_run": 300.0, "epochs": 30}
    # none reaches 100: the batch with the most epochs
    tried.clear()
    choice = fmnist.choose_schedule(_args(min_epochs=100), ["clmae"], tmp_path, 1e12)
    assert (choice["batch_size"], choice["epochs"], tried) == (1024, 90, [256, 512, 1024])


def test_the_calibration_child_times_the_trainers_loop_body(tmp_path):
    out = tmp_path / "rate.json"
    fmnist.calibrate_child("clmae", 4, "cpu", 1, out, probe=10)
    record = json.loads(out.read_text())
    assert record["method"] == "clmae" and record["batch"] == 4 and record["images_per_s"] > 0


def test_a_run_stopped_at_the_deadline_is_exported_from_its_newest_epoch_checkpoint(tmp_path):
    from test_train_trainer import tiny_config

    run = tmp_path / "run"
    trainer.train(tiny_config(run, epochs=3, save_every_steps=2, keep_checkpoints=2))
    (run / "checkpoint-0003.pt").unlink()  # as if stopped during epoch 3
    assert fmnist.finish_stopped(run) == 2
    exported = json.loads((run / "export" / "train_config.json").read_text())
    assert exported["exported_from"]["epochs_done"] == 2
    assert fmnist.finish_stopped(tmp_path / "empty") is None


def test_differences_are_stated_in_units_of_their_standard_error():
    a = {"values": [0.80, 0.82, 0.84], "mean": 0.82, "std": 0.02}
    b = {"values": [0.78, 0.79, 0.80], "mean": 0.79, "std": 0.01}
    d = report.difference(a, b)
    sigma = ((0.02**2 + 0.01**2) / 3) ** 0.5  # 0.01291
    assert d["difference"] == pytest.approx(0.03) and d["sigma"] == pytest.approx(sigma)
    assert d["in_sigma"] == pytest.approx(0.03 / sigma)
    assert report.difference({"values": [0.8], "mean": 0.8, "std": 0.0}, b) is None


def test_the_one_call_script_runs_end_to_end_on_the_cpu(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path / "out"), ZOO=str(tmp_path / "zoo"), SMOKE="1", SEEDS="0 1")
    env["PYTHON"] = os.environ.get("PYTHON", sys.executable)
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "run_gpu_fmnist.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {
        "log.txt",
        "results.tar.gz",
        "clmae_s0.pretraining.part-aa",
        "mae_s0.pretraining.part-aa",
    }
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
        summary = json.load(tar.extractfile("./summary.json"))
        masks = json.load(tar.extractfile("./masks.json"))
    assert not any(n.endswith((".pt", "model.safetensors")) for n in names)  # no weights travel in the archive
    assert {"./summary.md", "./masks.md", "./curriculum.png", "./gpu.txt"} <= names
    assert "./runs/clmae_s0/masks/masks-0002.safetensors" in names
    results = summary["results"]
    for group in ("CL-MAE", "MAE"):
        assert len(results[group]["knn_reference"]["values"]) == 2 and len(results[group]["linear"]["values"]) == 2
        assert len(results[group]["finetune"]["values"]) == 1  # seed 0 only
    assert "finetune" not in results["random init"]
    assert {"knn_reference", "knn_weighted", "linear"} <= set(summary["comparison"])
    assert set(masks) == {
        "clmae_s0",
        "clmae_s1",
        "mae_s0",
        "mae_s1",
        "diagnostic_partner_s0",
        "diagnostic_adversary_s0",
    }
    assert summary["epochs"] == 2 and summary["recipes"] == ["clmae_fmnist", "mae_fmnist"]
    run = tmp_path / "zoo" / "runs"
    for name, lam in (("diagnostic_partner_s0", 1.0), ("diagnostic_adversary_s0", -1.0), ("clmae_s0", None)):
        cfg = json.loads((run / name / "export" / "train_config.json").read_text())
        assert cfg["fixed_lambda"] == lam and cfg["augment"] is True and cfg["recipe"] == "clmae_fmnist"
        assert cfg["warmup_epochs"] == pytest.approx(cfg["epochs"] / 5)
    # packaging the first seed: cards that state the recipe, the augmentation and the measured difference
    publish.publish(tmp_path / "zoo", 0, tmp_path / "weights", tmp_path / "bundled")
    card = (tmp_path / "weights" / publish.NAMES["clmae"] / "README.md").read_text()
    assert "recipe `clmae_fmnist`" in card and "RandomResizedCrop" in card and "CL-MAE - MAE:" in card
    assert "sigma" in card and "fine-tuning |" in card
    assert (tmp_path / "weights" / "fmnist_results" / "masks.md").is_file()
