import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_step.py"
_spec = importlib.util.spec_from_file_location("bench_step", _PATH)
bench_step = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_step)


@pytest.mark.parametrize(("method", "gflop"), [("clmae", 210.4), ("mae", 58.5)])
def test_flop_count_matches_the_method_cost(method, gflop):
    # docs/method.md §9: about 210 GFLOP per image per CL-MAE iteration for ViT-B/16, 58 for plain MAE.
    flops = bench_step.count_flops("vit_base_patch16_224", method, 2, {})
    assert flops / 2 / 1e9 == pytest.approx(gflop, rel=0.01)


@pytest.mark.slow
def test_cpu_smoke_run_writes_a_result(tmp_path, capsys):
    assert bench_step.main(["--cpu-smoke", "--steps", "1", "--warmup", "0", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("step_cpu_*.json")
    result = json.loads(path.read_text())
    assert result["device_type"] == "cpu" and result["matmul_ceiling_flops"] > 0
    assert [(r["arch"], r["method"]) for r in result["results"]] == [
        ("vit_tiny_patch4_28", "clmae"),
        ("vit_tiny_patch4_28", "mae"),
    ]
    for r in result["results"]:
        assert r["images_per_s"] > 0 and r["mfu"] > 0 and r["gflop_per_image"] > 0
    assert "img/s" in capsys.readouterr().out


def test_data_pipeline_smoke_run(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_data.py"
    spec = importlib.util.spec_from_file_location("bench_data", path)
    bench_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_data)
    args = ["--root", str(tmp_path / "jpegs"), "--images", "24", "--batch-size", "8", "--workers", "0"]
    assert bench_data.main([*args, "--batches", "2", "--warmup", "1", "--out", str(tmp_path)]) == 0
    assert len(list((tmp_path / "jpegs").glob("class_*/*.jpg"))) == 24
    (result,) = tmp_path.glob("data_*.json")
    assert json.loads(result.read_text())["images_per_s"] > 0


@pytest.mark.slow
def test_checkpoint_benchmark_smoke_run(tmp_path, capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_checkpoint.py"
    spec = importlib.util.spec_from_file_location("bench_checkpoint", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    args = ["--arch", "vit_tiny_patch4_28", "--repeats", "1", "--dir", str(tmp_path), "--out", str(tmp_path)]
    assert bench.main(args) == 0
    (result,) = tmp_path.glob("checkpoint_vit_tiny_patch4_28_*.json")
    seconds = json.loads(result.read_text())["seconds"]
    assert set(seconds) >= {"digest", "torch.save", "load_checkpoint (verified)"} and all(
        v > 0 for v in seconds.values()
    )
    assert "load_checkpoint (verified)" in capsys.readouterr().out
