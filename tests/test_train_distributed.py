"""End-to-end runs in subprocesses: two gloo processes under torchrun, and a run killed with SIGKILL."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from conftest import HANG_GUARD

from clmae.train.checkpoint import list_checkpoints, load_checkpoint

pytestmark = pytest.mark.slow  # starts processes or reads the full Fashion-MNIST

TINY = [
    "model_kwargs.embed_dim=32",
    "model_kwargs.depth=2",
    "model_kwargs.num_heads=2",
    "model_kwargs.decoder_embed_dim=32",
    "model_kwargs.decoder_depth=1",
    "model_kwargs.decoder_num_heads=2",
    "model_kwargs.masker_depth=1",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _train_args(out, *overrides):
    return [
        "-m",
        "clmae",
        "train",
        "--data",
        "synthetic:64",
        "--out",
        str(out),
        "model=vit_tiny_patch4_28",
        "warmup_epochs=1",
        "base_lr=1e-3",
        "vis_every=0",
        "export=false",
        "progress=false",
        "log_every=4",
        "device=cpu",
        *TINY,
        *overrides,
    ]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(out, *args):
    """``clmae train`` with two gloo processes on this machine; ``args`` are overrides and flags."""
    port = f"--master_port={_free_port()}"
    launcher = ["-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", port]
    return _run([*launcher, *_train_args(out, *args)])


def _run(args, timeout=HANG_GUARD):
    proc = subprocess.run([sys.executable, *args], env=ENV, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.integration
@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path, method):
    # 2 processes x batch 4 vs 1 process x 2 micro-batches of 4: the same chunks of data in every update
    # (GlobalBatchSampler), the same MAE masks (seeded per chunk), the masker's KL/diversity per chunk in both.
    common = [f"method={method}", "epochs=2", "batch_size=4", "base_lr=1e-2"]
    ddp = _torchrun(tmp_path / "ddp", *common, "accum_iter=1")
    assert "2 process(es) on cpu, global batch 8 (4 x 1 accumulation x 2)" in ddp.stdout
    _run(_train_args(tmp_path / "single", *common, "accum_iter=2"))
    a = load_checkpoint(tmp_path / "ddp" / "checkpoint-0002.pt")
    b = load_checkpoint(tmp_path / "single" / "checkpoint-0002.pt")
    assert a["step"] == b["step"] == 2 * 64 // 8
    start = load_checkpoint(tmp_path / "single" / "checkpoint-0001.pt")["model"]
    pa, pb = a["model"], b["model"]
    worst = max((pa[k] - pb[k]).abs().max().item() for k in pa)
    assert worst < 1e-5  # on one machine it is 0: (g0 + g1) / 2 and g0 / 2 + g1 / 2 round alike
    assert max((pa[k] - start[k]).abs().max().item() for k in pa) > 1e-4  # and training did move the weights
    for ra, rb in zip(a["metrics"], b["metrics"]):
        assert ra["mae_loss"] == pytest.approx(rb["mae_loss"], rel=1e-5)


@pytest.mark.integration
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    epochs = ["epochs=12", "batch_size=8"]
    _run(_train_args(tmp_path / "ref", *epochs))
    proc = subprocess.Popen(
        [sys.executable, *_train_args(tmp_path / "run", *epochs)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + HANG_GUARD
    while not any(int(p.stem.split("-")[1]) >= 2 for p in list_checkpoints(tmp_path / "run")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=HANG_GUARD) == -signal.SIGKILL
    done = load_checkpoint(list_checkpoints(tmp_path / "run")[-1])["epoch"]
    assert 2 <= done < 12
    resumed = _run([*_train_args(tmp_path / "run", *epochs), "--resume", "auto"])
    assert f"resumed from {tmp_path / 'run'}" in resumed.stdout and f"{done} epochs" in resumed.stdout
    a = load_checkpoint(tmp_path / "ref" / "checkpoint-0012.pt")
    b = load_checkpoint(tmp_path / "run" / "checkpoint-0012.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert a["metrics"] == [
        dict(r, seconds=a["metrics"][i]["seconds"], images_per_s=a["metrics"][i]["images_per_s"])
        for i, r in enumerate(b["metrics"])
    ]


@pytest.mark.integration
def test_two_process_resume_restores_every_ranks_random_state(tmp_path):
    # drop-path draws from each process's global RNG: a resumed 2-process run equals an uninterrupted one only if
    # every rank gets its own random state back, not only rank 0.
    common = ["epochs=2", "batch_size=4", "model_kwargs.drop_path_rate=0.5"]

    _torchrun(tmp_path / "ref", *common)
    _torchrun(tmp_path / "run", *common)
    (tmp_path / "run" / "checkpoint-0002.pt").unlink()  # back to the end of epoch 1
    saved = load_checkpoint(tmp_path / "run" / "checkpoint-0001.pt")
    assert len(saved["rng_ranks"]) == 2 and not torch.equal(
        saved["rng_ranks"][0]["torch"], saved["rng_ranks"][1]["torch"]
    )
    _torchrun(tmp_path / "run", *common, "--resume", "auto")
    a = load_checkpoint(tmp_path / "ref" / "checkpoint-0002.pt")["model"]
    b = load_checkpoint(tmp_path / "run" / "checkpoint-0002.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.integration
def test_two_process_resume_inside_an_epoch_equals_an_uninterrupted_run(tmp_path):
    common = ["epochs=2", "batch_size=4", "save_every_steps=3", "keep_checkpoints=0"]

    _torchrun(tmp_path / "ref", *common)
    run = tmp_path / "run"
    _torchrun(run, *common)
    names = [p.name for p in list_checkpoints(run)]  # 8 updates per epoch: inside epochs after updates 3, 6, 9, ...
    assert names == [
        "checkpoint-0000-00000003.pt",
        "checkpoint-0000-00000006.pt",
        "checkpoint-0001.pt",
        "checkpoint-0001-00000009.pt",
        "checkpoint-0001-00000012.pt",
        "checkpoint-0001-00000015.pt",
        "checkpoint-0002.pt",
    ]
    for name in names[-3:]:  # back to update 9: one update into the second epoch
        (run / name).unlink()
    resumed = _torchrun(run, *common, "--resume", "auto")
    assert "1 epochs and 1 updates into epoch 2, 9 updates done" in resumed.stdout
    a, b = load_checkpoint(tmp_path / "ref" / "checkpoint-0002.pt"), load_checkpoint(run / "checkpoint-0002.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    times = ("seconds", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in times} for r in a["metrics"]] == [
        {k: v for k, v in r.items() if k not in times} for r in b["metrics"]
    ]


@pytest.mark.integration
def test_two_process_sigterm_writes_a_checkpoint_and_resumes_exactly(tmp_path):
    # torchrun passes SIGTERM on to both workers; they agree at a logging step (log_every=4) to stop there, rank 0
    # writes a checkpoint of that update, and both exit 143. --resume auto then ends as the uninterrupted run.
    common = ["epochs=3", "batch_size=4", "keep_checkpoints=0", "save_every=10"]  # no checkpoint but the last one
    _torchrun(tmp_path / "ref", *common)
    run = tmp_path / "run"
    port = f"--master_port={_free_port()}"
    launcher = ["-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", port]
    proc = subprocess.Popen(
        [sys.executable, *launcher, *_train_args(run, *common)],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + HANG_GUARD
    while not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():  # update 4 is done
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()[-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # of 24 updates: the run stops at update 8 or 12
    _, err = proc.communicate(timeout=HANG_GUARD)
    stopped = [p for p in list_checkpoints(run) if p.name != "checkpoint-0003.pt"]
    assert "terminated: stopped by SIGTERM" in err and stopped, err[-3000:]
    updates = load_checkpoint(stopped[-1])["step"]
    assert updates % 4 == 0 or stopped[-1].name.count("-") == 1, stopped  # a logging step, or an epoch's start
    assert not list(run.glob(".*tmp*")) and not (run / ".lock").exists()
    _torchrun(run, *common, "--resume", "auto")
    a = load_checkpoint(tmp_path / "ref" / "checkpoint-0003.pt")
    b = load_checkpoint(run / "checkpoint-0003.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    times = ("seconds", "images_per_s")
    assert [{k: v for k, v in r.items() if k not in times} for r in a["metrics"]] == [
        {k: v for k, v in r.items() if k not in times} for r in b["metrics"]
    ]
