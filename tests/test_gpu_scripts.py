"""The two GPU scripts and what they stand on, rehearsed on the CPU: the tree and the staged data fit what a GPU
machine receives, the preflight stops a machine that lacks something in seconds, results are handed back after each
stage so that a SIGKILL at any moment keeps every finished stage, and ``run_gpu.sh`` runs end to end (SMOKE=1).
The comparison script's end-to-end rehearsal is in ``test_zoo_comparison.py``."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import HANG_GUARD

from clmae.data import SAMPLE_ROOT, load_fashion_mnist
from tools import deliver, preflight, stage_fmnist

pytestmark = pytest.mark.slow  # starts processes or reads the full Fashion-MNIST

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20
# The most the tracked tree may hold: 60 MiB (what may travel) - 25.3 MiB (Fashion-MNIST staged with xz) = 34.7.
TREE_LIMIT_MIB = 34.0
STAGED_MIB = 25.3
SCRIPTS = ROOT / "benchmarks"


def _env(**kw: str) -> dict[str, str]:
    # one intra-op thread per process: the rehearsals' models are tiny, and on two busy cores threads mostly wait
    env = dict(os.environ, PYTHON=os.environ.get("PYTHON", sys.executable), OMP_NUM_THREADS="1", **kw)
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def test_the_tracked_tree_leaves_room_for_the_staged_data():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tree, _ = stage_fmnist.travel_bytes(ROOT / "no-such-folder")
    assert tree / MIB <= TREE_LIMIT_MIB, f"{tree / MIB:.1f} MiB would travel before the data; keep it small"
    assert (tree / MIB + STAGED_MIB) <= stage_fmnist.LIMIT_MIB
    staged = ROOT / ".fmnist"
    if (staged / stage_fmnist.SUMS).is_file():  # staged here: the real total
        assert sum(size for size, _ in stage_fmnist.read_sums(staged).values()) / MIB <= STAGED_MIB


def test_staging_reads_back_bit_exact_and_the_preflight_checks_it(tmp_path, capsys):
    dest = tmp_path / "staged"
    assert stage_fmnist.main(["--source", str(SAMPLE_ROOT), "--dest", str(dest), "--limit-mib", "1000"]) == 0
    assert "total that travels" in capsys.readouterr().out
    assert sorted(p.name for p in dest.iterdir()) == sorted([*(f"{s}.xz" for s in stage_fmnist.STEMS), "SHA256SUMS"])
    for split in ("train", "test"):  # the staged files read back to the very same tensors
        a, b = load_fashion_mnist(split, SAMPLE_ROOT), load_fashion_mnist(split, dest)
        assert a[0].equal(b[0]) and a[1].equal(b[1])
    assert preflight.main(["--data", str(dest)]) == 0
    # a truncated file is named, in one line
    path = dest / "train-images-idx3-ubyte.xz"
    path.write_bytes(path.read_bytes()[:-10])
    assert preflight.main(["--data", str(dest)]) == 3
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("preflight FAILED: data:") and "train-images-idx3-ubyte.xz" in last
    (dest / "SHA256SUMS").unlink()
    assert preflight.main(["--data", str(dest)]) == 3
    assert "python -m tools.stage_fmnist" in capsys.readouterr().out
    # above the limit: refused
    assert stage_fmnist.main(["--source", str(SAMPLE_ROOT), "--dest", str(dest), "--limit-mib", "1"]) == 2
    assert "above 1 MiB" in capsys.readouterr().err


def test_preflight_names_missing_disk_space(tmp_path, capsys):
    assert preflight.main(["--disk", f"{tmp_path}:1e9"]) == 3
    assert "GiB free, under the 1e+09 GiB needed" in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize("script", ["run_gpu.sh", "run_gpu_fmnist.sh"])
def test_without_a_gpu_each_script_stops_with_one_line(tmp_path, script):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU")
    env = _env(OUT=str(tmp_path / "out"), ZOO=str(tmp_path / "zoo"), FMNIST=str(tmp_path / "none"))
    proc = subprocess.run(["bash", str(SCRIPTS / script)], env=env, capture_output=True, text=True, timeout=HANG_GUARD)
    assert proc.returncode == 3
    assert proc.stdout.strip().splitlines() == [proc.stdout.strip().splitlines()[-1]]  # one line
    assert "preflight FAILED: device: no CUDA device" in proc.stdout and "SMOKE=1" in proc.stdout
    assert not (tmp_path / "zoo").exists()


def test_deliver_keeps_the_return_limits_and_leaves_out_the_least_valuable(tmp_path):
    src = tmp_path / "src"
    (src / "runs" / "a" / "masks").mkdir(parents=True)
    (src / "summary.json").write_text("{}")
    (src / "big.bin").write_bytes(os.urandom(600))
    (src / "runs" / "a" / "masks" / "m.bin").write_bytes(os.urandom(600))
    (src / "model.pt").write_bytes(b"x")  # never: checkpoints and weights travel apart
    left = deliver.deliver(src, tmp_path / "out" / "r.tar.gz", low=["runs/*/masks/*"], budget=1000)
    assert left == ["runs/a/masks/m.bin"]
    with tarfile.open(tmp_path / "out" / "r.tar.gz") as tar:
        assert sorted(tar.getnames()) == ["LEFT_OUT.txt", "big.bin", "summary.json"]
        assert tar.extractfile("LEFT_OUT.txt").read().decode().endswith("runs/a/masks/m.bin\n")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["r.tar.gz"]  # no temporary file is left
    data = os.urandom(25)
    (tmp_path / "w").write_bytes(data)
    parts = deliver.deliver_parts(tmp_path / "w", tmp_path / "out" / "w", part_bytes=10)
    assert [p.name for p in parts] == ["w.part-00", "w.part-01", "w.part-02"]
    assert b"".join(p.read_bytes() for p in parts) == data


def _returned(out: Path) -> None:
    """What a GPU machine would hand back: at most 8 files of at most 15 MB, at most 2 folders deep, plain names."""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= 8 and all(p.stat().st_size <= 15_000_000 for p in files)
    assert all(len(p.relative_to(out).parts) <= 3 and re.fullmatch(r"[A-Za-z0-9._-]+", p.name) for p in files)


def _kill_at(cmd: list[str], env: dict[str, str], seconds: float) -> None:
    """Run ``cmd`` in its own process group and SIGKILL the whole group after ``seconds`` (as a cut call is)."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _delivered(log: Path) -> list[str]:
    text = log.read_text(errors="replace") if log.is_file() else ""
    return re.findall(r"^delivered: (\S+) ->", text, flags=re.M)


@pytest.mark.integration
@pytest.mark.parametrize("seed", [0, 1])
def test_a_comparison_killed_at_a_random_moment_keeps_every_finished_stage(tmp_path, seed):
    out = tmp_path / "out"
    env = _env(OUT=str(out), ZOO=str(tmp_path / "zoo"), SMOKE="1", FT_EPOCHS="0")
    _kill_at(["bash", str(SCRIPTS / "run_gpu_fmnist.sh")], env, random.Random(seed).uniform(10, 70))
    stages = _delivered(out / "log.txt")
    if not stages:
        assert not (out / "results.tar.gz").exists()
        return
    _returned(out)
    with tarfile.open(out / "results.tar.gz") as tar:  # complete and readable, whatever the moment
        summary = json.load(tar.extractfile("summary.json"))
        names = set(tar.getnames())
    assert set(stages) <= set(summary["stages"])  # every stage the log calls delivered is in the archive
    if "train" in stages:
        assert any(n.startswith("runs/clmae_s0/") for n in names)
        assert (out / "weights_s0.tar.part-00").is_file() and summary["weights_returned"]["sha256"]


@pytest.mark.integration
def test_run_gpu_rehearses_every_step_and_a_kill_keeps_the_finished_ones(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(SCRIPTS / "run_gpu.sh")],
        env=_env(OUT=str(out), SMOKE="1", BUDGET="1000000"),  # a budget no machine reaches: every step runs
        capture_output=True,
        text=True,
        timeout=3600,  # a hang guard only
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    _returned(out)
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "run_gpu.tar.gz"]
    steps = [
        "step_eager",
        "step_graphed",
        "step_compiled",
        "step_graphs",
        "jpegs",
        "data_pil",
        "data_device",
        "train_first",
        "train_resume",
        "profile",
    ]
    assert _delivered(out / "log.txt") == [*steps, "done"]
    with tarfile.open(out / "run_gpu.tar.gz") as tar:
        names = set(tar.getnames())
        check = tar.extractfile("train_check.txt").read().decode()
        first = tar.extractfile(next(n for n in sorted(names) if n.startswith("step_cpu_"))).read()
    assert {f"{s}.txt" for s in steps} <= names and "skipped.txt" not in names
    assert "resume check passed" in check and "resumed from" in check
    rows = json.loads(first)["results"]  # the headline first: both methods, images/s measured
    assert [r["method"] for r in rows] == ["clmae", "mae"] and all(r["images_per_s"] > 0 for r in rows)
    assert any(n.startswith("profile_") and n.endswith(".txt") for n in names)

    # the same script cut at a seeded random moment: every step the log calls delivered is in the archive
    killed = tmp_path / "killed"
    _kill_at(["bash", str(SCRIPTS / "run_gpu.sh")], _env(OUT=str(killed), SMOKE="1"), random.Random(2).uniform(10, 40))
    delivered = _delivered(killed / "log.txt")
    if delivered:
        _returned(killed)
        with tarfile.open(killed / "run_gpu.tar.gz") as tar:
            assert {f"{s}.txt" for s in delivered if s != "done"} <= set(tar.getnames())
