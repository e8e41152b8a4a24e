"""Smoke runs of benchmarks/bench_data.py's two decoding paths and of bench_step.py's profiler, on the CPU (no
assertion on time)."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

_ROOT = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, _ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("decode", ["pil", "device"])
def test_data_benchmark_runs_both_decoding_paths(tmp_path, capsys, decode):
    bench_data = _load("bench_data")
    args = ["--root", str(tmp_path / "jpegs"), "--images", "16", "--batch-size", "4", "--workers", "0"]
    args += ["--batches", "2", "--warmup", "1", "--decode", decode, "--device", "cpu", "--out", str(tmp_path)]
    assert bench_data.main(args) == 0
    (path,) = tmp_path.glob("data_*.json")
    result = json.loads(path.read_text())
    assert result["decode"] == decode and result["images_per_s"] > 0 and result["batches_timed"] == 2
    assert result["device"] == ("cpu" if decode == "device" else None)
    assert "images/s" in capsys.readouterr().out


def test_step_benchmark_profiles_one_iteration(tmp_path):
    bench_step = _load("bench_step")
    tiny = {**bench_step.CPU_TINY, "depth": 1, "decoder_depth": 1, "masker_depth": 1}
    path = bench_step.profile("vit_tiny_patch4_28", "clmae", 4, torch.device("cpu"), False, tiny, tmp_path)
    (table,) = tmp_path.glob("profile_vit_tiny_patch4_28_clmae_4_*.txt")
    assert table == path
    text = table.read_text()
    assert "Self CPU" in text and "aten::" in text
    (trace,) = tmp_path.glob("profile_vit_tiny_patch4_28_clmae_4_*.json.gz")
    assert trace.stat().st_size > 0
