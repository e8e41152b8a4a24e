"""Fault tests of ``clmae train``: kills at random moments and inside checkpoint and export writes, damaged
checkpoints, two runs on one folder, and resuming inside an epoch. Nothing may be lost or loaded silently."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import HANG_GUARD, TINY_RUN
from safetensors.torch import load_file

from clmae.train import trainer
from clmae.train.checkpoint import DamagedCheckpointError, list_checkpoints, load_checkpoint
from clmae.train.config import TrainConfig
from clmae.train.export import export_checkpoint, export_complete, remove_export_debris
from clmae.train.lock import RunLock
from clmae.train.signals import GracefulStop, GraceOver, Terminated

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

TINY = TINY_RUN
TIMES = ("seconds", "images_per_s")

# Run in a fresh interpreter: train with the config given as JSON; optionally die by SIGKILL at a chosen point.
RUNNER = """
import io, json, os, signal, sys
import torch
torch.set_num_threads(1)
from clmae.train import export, saving, trainer
from clmae.train.config import TrainConfig

cfg, resume, kill = TrainConfig.from_dict(json.loads(sys.argv[1])), sys.argv[2] or None, sys.argv[3]
if kill.startswith("checkpoint:"):  # the n-th checkpoint write dies half-way through the file
    calls, real = [0], saving.save_checkpoint
    def save_checkpoint(state, path):
        calls[0] += 1
        if calls[0] == int(kill.split(":")[1]):
            buf = io.BytesIO()
            torch.save(state, buf)
            tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
            tmp.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
            os.kill(os.getpid(), signal.SIGKILL)
        return real(state, path)
    saving.save_checkpoint = save_checkpoint
if kill == "export":  # the export dies after writing its files, before the folder is moved into place
    real_save = export.save_pretrained
    def save_pretrained(*args, **kwargs):
        real_save(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    export.save_pretrained = save_pretrained
print("started", flush=True)
trainer.train(cfg, resume=resume)
"""


def tiny_config(out, **overrides) -> TrainConfig:
    values = {
        "model": "vit_tiny_patch4_28",
        "model_kwargs": TINY,
        "data": "synthetic:64",
        "epochs": 3,
        "warmup_epochs": 1,
        "batch_size": 8,
        "base_lr": 1e-3,
        "out": str(out),
        "log_every": 3,
        "vis_every": 0,
        "vis_images": 2,
        "keep_checkpoints": 2,
        "device": "cpu",
        "progress": False,
    }
    return TrainConfig.from_dict({**values, **overrides})


def _spawn(cfg, resume="", kill=""):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [sys.executable, "-c", RUNNER, json.dumps(cfg.to_dict()), resume, kill]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _without_times(records):
    return [{k: v for k, v in r.items() if k not in TIMES} for r in records]


def _assert_finished_like(run, ref):
    """``run`` ended with the same weights, export and per-epoch records as the uninterrupted ``ref``."""
    assert export_complete(run / "export"), sorted(p.name for p in run.iterdir())
    for name in ("model.safetensors", "pretraining.safetensors"):
        assert _same_weights(load_file(ref / "export" / name), load_file(run / "export" / name)), name
    a, b = load_checkpoint(list_checkpoints(ref)[-1]), load_checkpoint(list_checkpoints(run)[-1])
    assert _same_weights(a["model"], b["model"]) and _without_times(a["metrics"]) == _without_times(b["metrics"])
    assert not (run / ".lock").exists() and not list(run.glob(".*tmp*")) and (run / "history.png").is_file()


@pytest.mark.integration
@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_mid_epoch_resume_is_bit_identical(tmp_path, method, monkeypatch):
    ref = tmp_path / "ref"
    trainer.train(tiny_config(ref, method=method, save_every_steps=3, accum_iter=2, batch_size=4))
    # The same run stopped by an exception after its update 11 (a checkpoint at update 9, 1 update into epoch 2).
    run, real_step, steps = tmp_path / "run", trainer.train_step, [0]

    def failing_step(*args, **kwargs):
        steps[0] += 1
        if steps[0] == 12:
            raise KeyboardInterrupt
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(tiny_config(run, method=method, save_every_steps=3, accum_iter=2, batch_size=4))
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-0001.pt", "checkpoint-0001-00000009.pt"]
    saved = load_checkpoint(run / "checkpoint-0001-00000009.pt")
    assert (saved["epoch"], saved["step"], saved["epoch_step"]) == (1, 9, 1)
    monkeypatch.setattr(trainer, "train_step", real_step)
    result = trainer.train(tiny_config(run, method=method, save_every_steps=3, accum_iter=2, batch_size=4), "auto")
    assert result["step"] == 3 * 8
    _assert_finished_like(run, ref)
    # the metrics file holds each logged update once, as the uninterrupted run's
    steps_logged = [r["step"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]
    ref_logged = [r["step"] for r in map(json.loads, (ref / "metrics.jsonl").read_text().splitlines())]
    assert steps_logged == ref_logged


@pytest.mark.integration
def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    cfg = dict(data="synthetic:128", epochs=4, save_every_steps=3, keep_checkpoints=1)
    start = time.perf_counter()
    trainer.train(tiny_config(tmp_path / "ref", **cfg))
    span = time.perf_counter() - start  # how long a whole run takes here: the kills land anywhere inside it
    run, rng, kills = tmp_path / "run", random.Random(0), 0
    for attempt in range(8):
        proc = _spawn(tiny_config(run, **cfg), resume="auto")
        assert proc.stdout.readline().strip() == "started"
        time.sleep(rng.uniform(0.0, (0.7 if attempt == 0 else 1.2) * span))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=HANG_GUARD)
        assert "Traceback" not in proc.stderr.read()
        if proc.returncode == 0:
            break
    else:
        proc = _spawn(tiny_config(run, **cfg), resume="auto")
        assert proc.wait(timeout=HANG_GUARD) == 0, proc.stderr.read()
    assert kills >= 1
    _assert_finished_like(run, tmp_path / "ref")


@pytest.mark.integration
@pytest.mark.parametrize("kill", ["checkpoint:2", "checkpoint:7", "export"])
def test_sigkill_inside_a_checkpoint_or_export_write(tmp_path, kill):
    cfg = dict(epochs=2, save_every_steps=2)
    trainer.train(tiny_config(tmp_path / "ref", **cfg))
    run = tmp_path / "run"
    proc = _spawn(tiny_config(run, **cfg), kill=kill)
    assert proc.wait(timeout=HANG_GUARD) == -signal.SIGKILL
    assert not export_complete(run / "export")
    if kill == "export":  # every epoch was done: resuming only writes the export
        assert load_checkpoint(list_checkpoints(run)[-1])["epoch"] == 2
    else:  # the half-written file is a temporary one: never listed, never loaded
        assert list(run.glob(".checkpoint-*.tmp*"))
    resumed = trainer.train(tiny_config(run, **cfg), "auto")
    assert resumed["export"] == run / "export"
    _assert_finished_like(run, tmp_path / "ref")


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "flip":  # 4 KB of flipped bits in the middle, where the tensors are
        mid = len(data) // 2
        data[mid : mid + 4096] = bytes(b ^ 0xFF for b in data[mid : mid + 4096])
    else:
        data = data[: len(data) // 3]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_damaged_newest_checkpoint_is_skipped_and_a_named_one_refused(tmp_path, how, capsys):
    cfg = dict(epochs=2, keep_checkpoints=0, export=False)
    trainer.train(tiny_config(tmp_path / "ref", **cfg))
    run = tmp_path / "run"
    trainer.train(tiny_config(run, **cfg))
    newest = run / "checkpoint-0002.pt"
    _damage(newest, how)
    with pytest.raises(DamagedCheckpointError, match=r"checkpoint-0002\.pt.*(damaged|truncated|corrupt)"):
        load_checkpoint(newest)
    with pytest.raises(ValueError, match=r"checkpoint-0002\.pt.*older checkpoint"):
        trainer.train(tiny_config(run, **cfg), str(newest))
    capsys.readouterr()
    result = trainer.train(tiny_config(run, **cfg), "auto")
    out = capsys.readouterr().out
    assert "warning: skipping damaged checkpoint checkpoint-0002.pt" in out and "resumed from" in out
    assert result["step"] == 2 * 8
    a, b = load_checkpoint(tmp_path / "ref" / "checkpoint-0002.pt"), load_checkpoint(newest)
    assert _same_weights(a["model"], b["model"])


def test_every_checkpoint_damaged_is_an_error(tmp_path):
    run = tmp_path / "run"
    trainer.train(tiny_config(run, epochs=2, keep_checkpoints=0, export=False))
    for path in list_checkpoints(run):
        _damage(path, "truncate")
    with pytest.raises(ValueError, match=r"every checkpoint in .* is damaged"):
        trainer.train(tiny_config(run, epochs=2, keep_checkpoints=0, export=False), "auto")


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    out = tmp_path / "run"
    holder = RunLock(out).acquire()  # another run, alive, holds the folder
    try:
        with pytest.raises(ValueError, match=rf"--out {out} is in use by process {os.getpid()}"):
            trainer.train(tiny_config(out, epochs=1))
        assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written, the holder's lock intact
    finally:
        holder.release()
    assert not (out / ".lock").exists()
    trainer.train(tiny_config(out, epochs=1, export=False))
    assert not (out / ".lock").exists()


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, capsys):
    out = tmp_path / "run"
    proc = _spawn(tiny_config(out, epochs=50, export=False))
    assert proc.stdout.readline().strip() == "started"
    deadline = time.monotonic() + HANG_GUARD
    while not list_checkpoints(out):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    with pytest.raises(ValueError, match=rf"in use by process {proc.pid}"):  # alive: refused
        trainer.train(tiny_config(out, epochs=50, export=False), "auto")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=HANG_GUARD)
    assert json.loads((out / ".lock").read_text())["pid"] == proc.pid  # left behind
    capsys.readouterr()
    RunLock(out).acquire().release()
    assert f"taking over {out / '.lock'} from process {proc.pid}" in capsys.readouterr().out
    assert not (out / ".lock").exists()


def test_a_run_stopped_by_bad_input_leaves_no_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images found"):
        trainer.train(tiny_config(tmp_path / "run", data=str(tmp_path / "empty")))
    assert not (tmp_path / "run").exists()


def test_out_naming_a_file_is_a_clear_error(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"--out .*file is a file, not a folder"):
        trainer.train(tiny_config(path, epochs=1))
    assert path.read_text() == "x"


def test_export_command_writes_the_weights_of_any_checkpoint(tmp_path):
    from clmae.cli import main

    run = tmp_path / "run"
    trainer.train(tiny_config(run, epochs=2, keep_checkpoints=0))
    assert main(["export", str(run / "checkpoint-0002.pt"), str(tmp_path / "again")]) == 0
    for name in ("model.safetensors", "pretraining.safetensors"):
        assert _same_weights(load_file(run / "export" / name), load_file(tmp_path / "again" / name))
    first = export_checkpoint(run / "checkpoint-0001.pt", tmp_path / "first")
    saved = load_checkpoint(run / "checkpoint-0001.pt")["model"]
    assert _same_weights({k: v for k, v in saved.items()}, load_file(first / "pretraining.safetensors"))
    assert json.loads((first / "train_config.json").read_text())["exported_from"]["epochs_done"] == 1


def test_a_fallback_sets_the_damaged_checkpoint_aside_so_pruning_keeps_the_good_ones(tmp_path, capsys):
    cfg = dict(epochs=3, save_every_steps=3, keep_checkpoints=1, export=False)
    trainer.train(tiny_config(tmp_path / "ref", **cfg))
    run = tmp_path / "run"
    trainer.train(tiny_config(run, **cfg))
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-0003.pt"]
    # An interrupted continuation: the end of epoch 2 survives, the newest (end of epoch 3) is damaged.
    (tmp_path / "ref" / "checkpoint-0003.pt").rename(tmp_path / "final.pt")
    trainer.train(tiny_config(tmp_path / "ref2", **{**cfg, "keep_checkpoints": 0}))
    for p in run.glob("checkpoint-*.pt"):
        p.unlink()
    (tmp_path / "ref2" / "checkpoint-0002.pt").rename(run / "checkpoint-0002.pt")
    (tmp_path / "final.pt").rename(run / "checkpoint-0003.pt")
    _damage(run / "checkpoint-0003.pt", "flip")
    capsys.readouterr()
    trainer.train(tiny_config(run, **cfg), "auto")
    out = capsys.readouterr().out
    assert "set aside 1 newer checkpoint(s), no longer used: checkpoint-0003.pt" in out
    assert (run / "checkpoint-0003.pt.damaged").is_file()  # kept for inspection, never listed or pruned
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-0003.pt"]
    a = load_checkpoint(tmp_path / "ref2" / "checkpoint-0003.pt")["model"]
    assert _same_weights(a, load_checkpoint(run / "checkpoint-0003.pt")["model"])


def test_resuming_an_older_checkpoint_abandons_the_newer_ones(tmp_path):
    run = tmp_path / "run"
    trainer.train(tiny_config(run, epochs=2, keep_checkpoints=0, export=False))
    trainer.train(tiny_config(run, epochs=2, keep_checkpoints=0, export=False), str(run / "checkpoint-0001.pt"))
    assert (run / "checkpoint-0002.pt.abandoned").is_file()
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-0001.pt", "checkpoint-0002.pt"]


def test_resume_refuses_a_data_set_of_another_size(tmp_path):
    run = tmp_path / "run"
    trainer.train(tiny_config(run, epochs=2, keep_checkpoints=0, export=False))
    (run / "checkpoint-0002.pt").unlink()
    with pytest.raises(ValueError, match=r"had 64 images when the checkpoint was written and has 72 now"):
        trainer.train(tiny_config(run, epochs=2, keep_checkpoints=0, export=False, data="synthetic:72"), "auto")


def test_export_never_replaces_a_folder_that_is_not_an_export(tmp_path):
    run = tmp_path / "run"
    trainer.train(tiny_config(run, epochs=1, export=False))
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match=r"thesis exists and is not a clmae-format weights folder"):
        export_checkpoint(run / "checkpoint-0001.pt", precious)
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]
    first = export_checkpoint(run / "checkpoint-0001.pt", tmp_path / "w")
    assert export_checkpoint(run / "checkpoint-0001.pt", first) == first and export_complete(first)  # replaced whole


# --- Interrupts, full disks and debris -----------------------------------------------------------------------------


def _cli_spawn(cfg, resume="auto"):
    """``clmae train`` (the command, as a user runs it) with ``cfg`` as its recipe."""
    recipe = cfg.out + ".json"
    with open(recipe, "w") as f:
        json.dump(cfg.to_dict(), f)
    args = [sys.executable, "-m", "clmae", "train", "--recipe", recipe, *(["--resume", resume] if resume else [])]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_training(proc):
    """Read the command's output up to the line it prints as the training loop starts (or to its end)."""
    for line in proc.stdout:
        if "process(es) on cpu" in line:
            return


def _one_line(err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _dead_pid():
    """The id of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.integration
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["sigint", "sigterm"])
def test_sigint_and_sigterm_at_random_moments_resume_exactly(tmp_path, sig):
    cfg = dict(data="synthetic:128", epochs=3, save_every_steps=2, keep_checkpoints=1)
    start = time.perf_counter()
    trainer.train(tiny_config(tmp_path / "ref", **cfg))
    span = time.perf_counter() - start
    run, rng, stopped = tmp_path / "run", random.Random(int(sig)), 0
    code, first = (130, "clmae train: interrupted: stopped by Ctrl-C") if sig == signal.SIGINT else (143, "")
    for attempt in range(4):
        proc = _cli_spawn(tiny_config(run, **cfg))
        _wait_for_training(proc)
        if attempt == 0:  # the first stop lands inside the loop, whatever the speed: after the first checkpoint
            while proc.poll() is None and not list_checkpoints(run):
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, 0.05 * span))
        else:
            time.sleep(rng.uniform(0.0, 0.5 * span))  # inside the training loop, which takes most of the span
        if proc.poll() is None:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=HANG_GUARD)
        if proc.returncode == 0 or export_complete(run / "export"):
            break  # finished (a signal that came after the run's end, as the command exits, stopped no training)
        stopped += 1
        assert proc.returncode == code, err
        line = _one_line(err)
        assert line.startswith(first or "clmae train: terminated: stopped by SIGTERM after"), line
        assert "--resume auto" in line or "start again" in line, line
        if sig == signal.SIGTERM and " wrote " in line:  # a checkpoint of exactly the update reached
            path = line.split(" wrote ")[1].split(":")[0]
            updates = int(line.split(" after ")[1].split()[0])
            assert load_checkpoint(path)["step"] == updates and list_checkpoints(run)[-1] == type(run)(path)
        assert not list(run.glob(".*tmp*")) and not (run / ".lock").exists()
    else:
        proc = _cli_spawn(tiny_config(run, **cfg))
        assert proc.wait(timeout=HANG_GUARD) == 0, proc.stderr.read()
    assert stopped >= 1
    _assert_finished_like(run, tmp_path / "ref")


def test_sigterm_writes_a_checkpoint_of_the_update_reached_and_resumes_exactly(tmp_path, monkeypatch):
    cfg = dict(epochs=2, keep_checkpoints=0)  # no checkpoints inside epochs: the one SIGTERM writes is the only one
    trainer.train(tiny_config(tmp_path / "ref", **cfg))
    run, real_step, steps = tmp_path / "run", trainer.train_step, [0]

    def step_then_term(*args, **kwargs):
        steps[0] += 1
        if steps[0] == 5:  # SIGTERM arrives during update 5: it finishes, then the run stops
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", step_then_term)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated, match=r"after 5 updates \(epoch 1 of 2\); wrote .*checkpoint-0000-00000005\.pt"):
        trainer.train(tiny_config(run, **cfg))
    assert signal.getsignal(signal.SIGTERM) == before  # the run's handler lives as long as the run
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-0000-00000005.pt"]
    assert not (run / ".lock").exists()
    monkeypatch.setattr(trainer, "train_step", real_step)
    trainer.train(tiny_config(run, **cfg), "auto")
    _assert_finished_like(run, tmp_path / "ref")


def test_sigterm_abandons_what_outlasts_the_grace_period():
    with pytest.raises(GraceOver), GracefulStop(grace=0.2) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested is not None
        for _ in range(600):  # at most a minute: the timer ends it long before
            time.sleep(0.1)


def _enospc(real, after_calls):
    """``real`` that, on its ``after_calls``-th call, writes a little and fails as a full disk does."""
    calls = [0]

    def write(*args, **kwargs):
        calls[0] += 1
        if calls[0] == after_calls:
            target = args[1]
            if hasattr(target, "write"):
                target.write(b"\0" * 4096)
            else:
                os.makedirs(target, exist_ok=True)
                with open(os.path.join(target, "model.safetensors"), "wb") as f:
                    f.write(b"\0" * 4096)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args, **kwargs)

    return write


def test_a_full_disk_during_a_checkpoint_fails_cleanly_and_the_run_resumes_exactly(tmp_path, monkeypatch, capsys):
    from clmae import cli
    from clmae.train import checkpoint

    cfg = dict(epochs=2, save_every_steps=3, keep_checkpoints=0)
    trainer.train(tiny_config(tmp_path / "ref", **cfg))
    run = tmp_path / "run"
    recipe = tmp_path / "run.json"
    recipe.write_text(json.dumps(tiny_config(run, **cfg).to_dict()))
    monkeypatch.setattr(checkpoint.torch, "save", _enospc(torch.save, 3))  # the third checkpoint: after update 8
    capsys.readouterr()
    assert cli.main(["train", "--recipe", str(recipe), "--resume", "auto"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"clmae train: error: no space left in {run} for checkpoint checkpoint-0001.pt"), line
    assert "it needs about" in line and "free" in line
    assert not list(run.glob(".*tmp*")) and not (run / ".lock").exists()
    kept = list_checkpoints(run)
    assert [p.name for p in kept] == ["checkpoint-0000-00000003.pt", "checkpoint-0000-00000006.pt"]
    for path in kept:  # the earlier checkpoints are intact
        load_checkpoint(path)
    monkeypatch.undo()
    assert cli.main(["train", "--recipe", str(recipe), "--resume", "auto"]) == 0
    _assert_finished_like(run, tmp_path / "ref")


def test_a_full_disk_during_an_export_fails_cleanly_and_leaves_the_earlier_export(tmp_path, monkeypatch, capsys):
    from clmae import cli
    from clmae.train import export

    cfg = dict(epochs=1, keep_checkpoints=0)
    trainer.train(tiny_config(tmp_path / "ref", **cfg))
    run = tmp_path / "run"
    recipe = tmp_path / "run.json"
    recipe.write_text(json.dumps(tiny_config(run, **cfg).to_dict()))
    monkeypatch.setattr(export, "save_pretrained", _enospc(export.save_pretrained, 1))
    capsys.readouterr()
    assert cli.main(["train", "--recipe", str(recipe)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"clmae train: error: no space left in {run} for the weights folder export"), line
    assert not export_complete(run / "export") and not list(run.glob(".*tmp*")) and not (run / ".lock").exists()
    load_checkpoint(run / "checkpoint-0001.pt")
    # clmae export into a folder that holds an earlier export: that one stays as it was
    monkeypatch.undo()
    assert cli.main(["export", str(run / "checkpoint-0001.pt"), str(tmp_path / "w")]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "w").iterdir()}
    monkeypatch.setattr(export, "save_pretrained", _enospc(export.save_pretrained, 1))
    capsys.readouterr()
    assert cli.main(["export", str(run / "checkpoint-0001.pt"), str(tmp_path / "w")]) == 2
    assert "no space left in" in _one_line(capsys.readouterr().err)
    assert {p.name: p.read_bytes() for p in (tmp_path / "w").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    assert cli.main(["train", "--recipe", str(recipe), "--resume", "auto"]) == 0
    _assert_finished_like(run, tmp_path / "ref")


def test_debris_of_killed_runs_and_exports_is_removed_by_the_next_one(tmp_path):
    cfg = dict(epochs=1, keep_checkpoints=0)
    trainer.train(tiny_config(tmp_path / "ref", **cfg))
    run = tmp_path / "run"
    trainer.train(tiny_config(run, **cfg))
    dead = _dead_pid()
    # what processes killed inside a checkpoint write and an export left: --resume auto removes it
    (run / f".checkpoint-0002.pt.tmp{dead}").write_bytes(b"\0" * 1000)
    (run / f".export.tmp{dead}").mkdir()
    (run / f".export.tmp{dead}" / "model.safetensors").write_bytes(b"\0" * 1000)
    trainer.train(tiny_config(run, **cfg), "auto")
    assert not list(run.glob(".*tmp*"))
    _assert_finished_like(run, tmp_path / "ref")
    # clmae export killed after writing its files, before moving the folder into place
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXPORT, str(run / "checkpoint-0001.pt"), str(tmp_path / "w")],
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.wait(timeout=HANG_GUARD) == -signal.SIGKILL
    assert [p.name for p in tmp_path.glob(".w.tmp*")] == [f".w.tmp{proc.pid}"] and not (tmp_path / "w").exists()
    export_checkpoint(run / "checkpoint-0001.pt", tmp_path / "w")
    assert export_complete(tmp_path / "w") and not list(tmp_path.glob(".w.*"))
    # killed between its two renames: the earlier export, set aside, comes back
    (tmp_path / "w").rename(tmp_path / f".w.old{dead}")
    (tmp_path / f".w.tmp{dead}").mkdir()
    assert [p.name for p in remove_export_debris(tmp_path / "w")] == [f".w.tmp{dead}"]
    assert export_complete(tmp_path / "w") and not list(tmp_path.glob(".w.*"))


KILLED_EXPORT = """
import os, signal, sys
import torch
torch.set_num_threads(1)
from clmae.train import export
real = export.save_pretrained
def save_pretrained(*args, **kwargs):
    real(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
export.save_pretrained = save_pretrained
export.export_checkpoint(sys.argv[1], sys.argv[2])
"""
