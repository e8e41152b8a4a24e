"""The CL-MAE vs MAE comparison: its recipes, how it sizes the runs, the partial results it keeps at a deadline, and
a smoke run of the whole one-call script on the CPU."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from clmae.train import trainer
from clmae.train.config import TrainConfig, load_recipe
from tools.zoo import calibrate, fmnist, publish, report

pytestmark = pytest.mark.slow  # starts processes or reads the full Fashion-MNIST

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
    values.update(safety=1.0, min_epochs=50, max_epochs=200, min_seeds=3, max_seeds=5, no_diagnostics=False)
    return argparse.Namespace(**{**values, "fallback_epochs": 20, **kw})


def _fake_calibration(monkeypatch, rates, tried, fail_at=None):
    def fake(args, methods, batch, out, deadline):
        tried.append((batch, len(methods)))
        if batch == fail_at:
            raise RuntimeError(f"calibration at batch {batch} failed or ran out of time")
        return rates[batch]

    monkeypatch.setattr(fmnist, "calibrate", fake)
    monkeypatch.setattr(fmnist, "_train_images", lambda spec: 1000)


def test_the_schedule_takes_the_most_seeds_then_the_smallest_batch_that_fits(monkeypatch, tmp_path):
    tried = []
    # five seeds per method + 2 diagnostics = 12 runs at once; 100 s x 520 img/s / 1000 images = 52 epochs at 512
    _fake_calibration(monkeypatch, {256: 300.0, 512: 520.0, 1024: 900.0}, tried)
    choice = fmnist.choose_schedule(_args(), tmp_path, 1e12)
    assert (choice["seeds"], choice["batch_size"], choice["epochs"]) == (5, 512, 52)
    assert tried == [(256, 12), (512, 12)] and choice["estimated"] is False
    assert choice["calibration"][256] == {"images_per_s_per_run": 300.0, "epochs": 30, "runs": 12}


def test_with_too_little_time_for_five_seeds_the_schedule_takes_fewer_by_hand_computed_rates(monkeypatch, tmp_path):
    tried = []
    _fake_calibration(monkeypatch, {256: 200.0, 512: 300.0, 1024: 380.0}, tried)
    choice = fmnist.choose_schedule(_args(), tmp_path, 1e12)
    assert tried == [(256, 12), (512, 12), (1024, 12)]
    # 4 seeds = 10 runs: 380 x 12/10 = 456 img/s -> 45 epochs, short of 50; 3 seeds = 8 runs: 300 x 12/8 = 450 at 512
    # -> 45, 380 x 12/8 = 570 at 1024 -> 57: three seeds at batch 1024
    assert (choice["seeds"], choice["batch_size"], choice["epochs"], choice["estimated"]) == (3, 1024, 57, True)
    # nothing fits even with three: three seeds at the batch with the most epochs
    tried.clear()
    choice = fmnist.choose_schedule(_args(min_epochs=100), tmp_path, 1e12)
    assert (choice["seeds"], choice["batch_size"], choice["epochs"]) == (3, 1024, 57)


def test_a_calibration_that_fails_or_overruns_never_stops_the_schedule(monkeypatch, tmp_path):
    tried = []
    _fake_calibration(monkeypatch, {256: 200.0, 512: 300.0}, tried, fail_at=512)
    choice = fmnist.choose_schedule(_args(), tmp_path, 1e12)  # 256 measured, 512 overran: 256's rate decides
    assert tried == [(256, 12), (512, 12)]
    assert (choice["seeds"], choice["batch_size"]) == (3, 256) and "512" in choice["notes"][0]
    tried.clear()
    _fake_calibration(monkeypatch, {}, tried, fail_at=256)
    choice = fmnist.choose_schedule(_args(), tmp_path, 1e12)  # nothing measured: the fallback schedule
    assert (choice["seeds"], choice["batch_size"], choice["epochs"]) == (3, 256, 20)
    assert "fallback" in choice["notes"][-1]


def test_a_pipeline_whose_calibration_overruns_still_writes_its_summary(tmp_path):
    out, back = tmp_path / "zoo", tmp_path / "back"
    argv = ["--data", "fmnist-sample", "--device", "cpu", "--out", str(out), "--deliver", str(back)]
    argv += ["--calibrate-seconds", "0", "--train-deadline", "0", "--deadline", "0", "--fallback-epochs", "2"]
    assert fmnist.main(argv) == 1  # no run trained: not a success, but every stage is accounted for
    summary = json.loads((back / "summary.json").read_text())
    assert summary["stages"]["schedule"] == "fallback" and summary["seeds"] == [0, 1, 2]
    assert summary["stages"]["train"].startswith("partial (0/8")
    assert all(summary["stages"][s].startswith("skipped") for s in ("probe", "masks", "references"))
    with tarfile.open(back / "results.tar.gz") as tar:
        assert "summary.json" in tar.getnames()


def test_the_calibration_child_times_the_trainers_loop_body(tmp_path):
    out = tmp_path / "rate.json"
    fmnist.calibrate_child("clmae", 4, "cpu", 1, out, probe=10)
    record = json.loads(out.read_text())
    assert record["method"] == "clmae" and record["batch"] == 4 and record["images_per_s"] > 0


def test_the_calibration_times_the_model_the_runs_train(monkeypatch, tmp_path):
    items = ["model_kwargs.depth=1", "model.embed_dim=32", "epochs=2", "model_kwargs.act_layer=gelu"]
    # the recipe's model arguments (clmae_fmnist.yaml: mask_ratio 0.75, norm_pix_loss false), then the overrides
    model = {"mask_ratio": 0.75, "norm_pix_loss": False, "depth": 1, "embed_dim": 32, "act_layer": "gelu"}
    assert fmnist.run_model("clmae", items) == ("vit_tiny_patch4_28", model)
    commands = []

    def fake_run_all(jobs, parallel, deadline, cwd=None):  # records the child commands instead of starting them
        for _, cmd, _ in jobs:
            commands.append(cmd)
            out = Path(cmd[cmd.index("--out") + 1])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"method": "clmae", "batch": 8, "images_per_s": 1.0, "losses": [[1.0]]}))

    monkeypatch.setattr(fmnist, "_run_all", fake_run_all)
    fmnist.calibrate(
        _args(override=items, calibrate_steps=1, calibrate_warmup=1, mask_probe=0, device="cpu"),
        ["clmae"],
        8,
        tmp_path,
        1e12,
    )
    (cmd,) = commands
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--override"] == items  # the runs' options, in order
    seen = {}

    def fake_time_updates(method, batch, device, steps, warmup, **kwargs):
        seen.update(kwargs)
        return {"images_per_s": 1.0, "losses": [[1.0]]}

    monkeypatch.setattr(calibrate, "time_updates", fake_time_updates)
    assert fmnist.main(cmd[3:]) == 0  # the child's own command line, as the parent wrote it
    assert (seen["arch"], seen["model_kwargs"]) == ("vit_tiny_patch4_28", model)


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
    env = dict(os.environ, OUT=str(tmp_path / "out"), ZOO=str(tmp_path / "zoo"), SMOKE="1")
    env["PYTHON"] = os.environ.get("PYTHON", sys.executable)
    env.update(CALIBRATE_SECONDS="1000000", DEADLINE="1000000")  # time limits no machine reaches: every stage runs
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "run_gpu_fmnist.sh")], env=env, capture_output=True, text=True, timeout=3600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "out"
    files = {p.name for p in out.iterdir()}
    assert files == {"log.txt", "summary.json", "results.tar.gz", "weights_s0.tar.part-00"}
    assert all(p.is_file() and p.stat().st_size <= 15_000_000 for p in out.iterdir())  # what a GPU machine returns
    joined = b"".join(p.read_bytes() for p in sorted(out.glob("weights_s0.tar.part-*")))
    assert (
        hashlib.sha256(joined).hexdigest()
        == json.loads((out / "summary.json").read_text())["weights_returned"]["sha256"]
    )
    with tarfile.open(fileobj=io.BytesIO(joined)) as tar:  # the parts join to the evaluated float16 weights
        for m in ("clmae", "mae"):
            published = tmp_path / "zoo" / "runs" / f"{m}_s0" / "published" / "pretraining.safetensors"
            assert tar.extractfile(f"{m}_s0.pretraining.safetensors").read() == published.read_bytes()
    with tarfile.open(out / "results.tar.gz") as tar:
        names = set(tar.getnames())
        summary = json.load(tar.extractfile("summary.json"))
        masks = json.load(tar.extractfile("masks.json"))
    assert summary == json.loads((out / "summary.json").read_text())
    assert not any(n.endswith((".pt", ".safetensors")) and "/masks/" not in n for n in names)  # no weights
    assert {"summary.md", "masks.md", "curriculum.png", "runs/clmae_s0/masks/masks-0002.safetensors"} <= names
    # the calibration chose the schedule (2 seeds per method at most in the rehearsal), and every stage ran
    assert summary["stages"] == dict.fromkeys(("schedule", "train", "probe", "masks", "references", "finetune"), "done")
    assert summary["calibration"]["calibration"] and summary["seeds"] == list(range(summary["calibration"]["seeds"]))
    n = len(summary["seeds"])
    results = summary["results"]
    for group in ("CL-MAE", "MAE"):
        assert len(results[group]["knn_reference"]["values"]) == n and len(results[group]["linear"]["values"]) == n
        assert len(results[group]["finetune"]["values"]) == 1  # seed 0 only
    assert "finetune" not in results["random init"] and "linear" in results["raw pixels"]
    assert "linear" in results["diagnostic: CL-MAE, lambda fixed +1 (partner)"]
    assert {"knn_reference", "knn_weighted", "linear"} <= set(summary["comparison"])
    diagnostics = {"diagnostic_partner_s0", "diagnostic_adversary_s0"}
    assert set(masks) == {f"{m}_s{s}" for m in ("clmae", "mae") for s in summary["seeds"]} | diagnostics
    assert summary["epochs"] == 2 and summary["recipes"] == ["clmae_fmnist", "mae_fmnist"]
    run = tmp_path / "zoo" / "runs"
    for name, lam in (("diagnostic_partner_s0", 1.0), ("diagnostic_adversary_s0", -1.0), ("clmae_s0", None)):
        cfg = json.loads((run / name / "export" / "train_config.json").read_text())
        assert cfg["fixed_lambda"] == lam and cfg["augment"] is True and cfg["recipe"] == "clmae_fmnist"
        assert cfg["warmup_epochs"] == pytest.approx(cfg["epochs"] / 5)
        assert cfg["cuda_graph"] is True  # the rehearsal's made-up graphed records are faster and equal
    plan = summary["plan"]
    assert (plan["path"], plan["epochs"], plan["seeds"]) == ("graph", 2, summary["seeds"])
    assert plan["batch_size"] == summary["batch_size"] and plan["expected_train_seconds"] > 0
    # packaging the first seed: cards that state the recipe, the augmentation and the measured difference
    publish.publish(tmp_path / "zoo", 0, tmp_path / "weights", tmp_path / "bundled")
    card = (tmp_path / "weights" / publish.NAMES["clmae"] / "README.md").read_text()
    assert "recipe `clmae_fmnist`" in card and "RandomResizedCrop" in card and "CL-MAE - MAE:" in card
    assert "sigma" in card and "fine-tuning |" in card
    assert (tmp_path / "weights" / "fmnist_results" / "masks.md").is_file()
    bundle = tmp_path / "bundled" / publish.NAMES["clmae"]  # each tensor once: no separate encoder file
    assert {p.name for p in bundle.iterdir()} == {"config.json", "pretraining.safetensors"}
