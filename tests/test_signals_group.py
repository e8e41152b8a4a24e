"""SIGTERM and SIGINT sent to a whole process group, as a terminal's Ctrl-C, ``kill -- -PGID`` and SLURM send them:
with DataLoader workers, in a single process and under torchrun. Each run must stop at an update's end with a
checkpoint of exactly that update, say so in one line, and ``--resume auto`` must then end as an uninterrupted run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import HANG_GUARD
from PIL import Image
from test_train_faults import _assert_finished_like, _one_line, tiny_config

import clmae
from clmae.train import trainer
from clmae.train.checkpoint import list_checkpoints, load_checkpoint
from clmae.train.signals import GracefulStop, ignore_stop_signals, stop_signals_held

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
CLMAE_SOURCE = str(Path(clmae.__file__).parent)
# Long enough (3 x 32 updates) that a signal sent after the first logged update lands well inside the run.
RUN = dict(epochs=3, batch_size=4, log_every=1, keep_checkpoints=0)
STOPPED = {
    signal.SIGTERM: (143, "clmae train: terminated: stopped by SIGTERM after "),
    signal.SIGINT: (130, "clmae train: interrupted: stopped by Ctrl-C after "),
}


def image_folder(root: Path, n: int = 128) -> Path:
    """``n`` random 28x28 greyscale PNG files."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def _recipe(cfg) -> str:
    recipe = cfg.out + ".json"
    with open(recipe, "w") as f:
        json.dump(cfg.to_dict(), f)
    return recipe


def _spawn(args):
    """A command in a new session (its own process group, as a job in a terminal or under SLURM)."""
    return subprocess.Popen(
        [sys.executable, *args],
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _signal_after_first_log(proc, run: Path, sig: int) -> tuple[int, str]:
    """Wait for the run's first metrics line, send ``sig`` to the command's whole process group, wait for the end;
    returns (exit code, stderr)."""
    metrics, deadline = run / "metrics.jsonl", time.monotonic() + HANG_GUARD
    while not (metrics.is_file() and metrics.read_text().strip()):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the run ended or hung before its first metrics line: {proc.communicate()[1][-3000:]}")
        time.sleep(0.05)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=HANG_GUARD)
    return proc.returncode, err


def _group_ends(pgid: int) -> bool:
    """Whether every process of the group has ended (DataLoader workers included), within a minute."""
    for _ in range(600):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def _check_stop_line(line: str, run: Path, sig: int) -> int:
    """The one line names the update reached and the checkpoint of exactly that update; returns the update."""
    assert line.startswith(STOPPED[sig][1]), line
    assert " wrote " in line and "--resume auto" in line, line
    updates = int(line.split(" after ")[1].split()[0])
    path = Path(line.split(" wrote ")[1].split(":")[0])
    assert load_checkpoint(path)["step"] == updates and list_checkpoints(run)[-1] == path
    assert not list(run.glob(".*tmp*")) and not (run / ".lock").exists()
    return updates


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("workers", [2, 0], ids=["workers", "single"])
def test_a_signal_to_the_process_group_stops_with_a_checkpoint_and_resumes_exactly(tmp_path, sig, workers):
    data = str(image_folder(tmp_path / "images")) if workers else "synthetic:128"
    cfg = dict(RUN, data=data, num_workers=workers)
    trainer.train(tiny_config(tmp_path / "ref", **cfg))
    run = tmp_path / "run"
    recipe = _recipe(tiny_config(run, **cfg))
    proc = _spawn(["-m", "clmae", "train", "--recipe", recipe])
    code, err = _signal_after_first_log(proc, run, sig)
    assert code == STOPPED[sig][0], err[-3000:]
    _check_stop_line(_one_line(err), run, sig)  # one line, no traceback: no worker's death reported
    assert _group_ends(proc.pid), "DataLoader workers outlived the run"
    resumed = _spawn(["-m", "clmae", "train", "--recipe", recipe, "--resume", "auto"])
    assert resumed.wait(timeout=HANG_GUARD) == 0, resumed.stderr.read()[-3000:]
    _assert_finished_like(run, tmp_path / "ref")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(recipe: str, *flags: str) -> list[str]:
    port = f"--master_port={_free_port()}"
    launcher = ["-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1", port]
    return [*launcher, "-m", "clmae", "train", "--recipe", recipe, *flags]


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_signal_to_torchruns_process_group_stops_both_processes_with_one_checkpoint(tmp_path, sig):
    # torchrun takes the signal, passes it on to each process's own group (the process and its DataLoader worker)
    # and then exits 1 with its own traceback (SignalException, torch's launcher; docs/cli.md). The processes agree
    # at a logging step to stop, rank 0 writes that update's checkpoint and alone prints the one clmae line.
    data = str(image_folder(tmp_path / "images")) if sig == signal.SIGTERM else "synthetic:128"
    cfg = dict(RUN, data=data, num_workers=1 if sig == signal.SIGTERM else 0, log_every=2, export=sig == signal.SIGTERM)
    run = tmp_path / "run"
    recipe = _recipe(tiny_config(run, **cfg))
    proc = _spawn(_torchrun(recipe))
    code, err = _signal_after_first_log(proc, run, sig)
    assert code == 1, err[-3000:]  # torchrun's own exit status after it was signalled
    ours = [line for line in err.splitlines() if line.startswith("clmae ")]
    assert len(ours) == 1, err[-3000:]
    assert f'File "{CLMAE_SOURCE}' not in err, err[-3000:]  # the only traceback is torchrun's own
    updates = _check_stop_line(ours[0], run, sig)
    assert updates % 2 == 0, updates  # a logging step, where both processes agree
    assert _group_ends(proc.pid)
    if sig == signal.SIGTERM:  # resumed under torchrun, it ends as the uninterrupted run
        ref = tmp_path / "ref"
        assert subprocess.run([sys.executable, *_torchrun(_recipe(tiny_config(ref, **cfg)))], env=ENV).returncode == 0
        assert subprocess.run([sys.executable, *_torchrun(recipe, "--resume", "auto")], env=ENV).returncode == 0
        _assert_finished_like(run, ref)


def test_workers_ignore_stop_signals_and_the_main_process_gets_a_held_one():
    # A forked child started while the signals are held ignores them once its init has run; the parent receives
    # the signal that arrived meanwhile as the block ends.
    read, write = os.pipe()
    with GracefulStop(grace=60) as stop, stop_signals_held():
        pid = os.fork()
        if pid == 0:  # the child: as a DataLoader worker, then signalled by the group
            ignore_stop_signals(0)
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGINT)
            os.write(write, b"alive")
            os._exit(0)
        os.kill(os.getpid(), signal.SIGTERM)  # held back from this thread until the block ends
        assert os.read(read, 5) == b"alive"
        assert os.waitpid(pid, 0)[1] == 0
    assert stop.requested is not None and not stop.by_ctrl_c
