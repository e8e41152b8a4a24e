"""The one way clmae writes files and folders (clmae._atomic): a failed write (a file-size limit, a full disk, an error
half-way) leaves the earlier file or folder whole and no temporary behind; names at the file system's limit work."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import tiny_pretrainer
from PIL import Image

import clmae
from clmae import _atomic, cli
from clmae._atomic import temp_path, write_file, write_folder
from clmae._disk import DiskFullError
from clmae.train.export import remove_export_debris

pytestmark = pytest.mark.usefixtures("one_thread")

LIMIT = 64 * 1024  # the file-size limit of the subprocesses (ulimit -f), in bytes


def _listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _limited(code: str, cwd: Path, limit: int = LIMIT) -> subprocess.CompletedProcess:
    """Run Python ``code`` in a subprocess whose files may not grow beyond ``limit`` bytes (``ulimit -f``), with
    SIGXFSZ ignored so that a write beyond it fails with EFBIG instead of killing the process."""
    import resource

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=env,
        preexec_fn=preexec,
        capture_output=True,
        text=True,
        timeout=600,
    )


# --- write_file -------------------------------------------------------------------------------------------------


def test_write_file_writes_bytes_or_a_writer_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "f.bin"
    write_file(target, b"first")
    assert target.read_bytes() == b"first"
    write_file(target, lambda f: f.write(b"second"))
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() creates files, not safetensors' 0600


def test_a_writer_that_fails_half_way_leaves_the_earlier_file_whole(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"earlier result")

    def half(f):
        f.write(b"x" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")  # what a full disk gives

    with pytest.raises(DiskFullError, match=r"no space left to write file .*f\.bin.*earlier one is unchanged"):
        write_file(target, half)
    assert _listing(tmp_path) == {"f.bin": b"earlier result"}

    def broken(f):
        f.write(b"y" * 10)
        raise RuntimeError("the writer's own bug")

    with pytest.raises(RuntimeError, match="own bug"):
        write_file(target, broken)
    assert _listing(tmp_path) == {"f.bin": b"earlier result"}


def test_enospc_on_fsync_is_one_line_and_keeps_the_earlier_file(tmp_path, monkeypatch):
    """Network file systems report a full disk at fsync; the rename must not happen then."""
    target = tmp_path / "f.bin"
    target.write_bytes(b"earlier")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_atomic.os, "fsync", full)
    with pytest.raises(DiskFullError) as info:
        write_file(target, b"new bytes")
    assert "\n" not in str(info.value) and str(target) in str(info.value)
    assert _listing(tmp_path) == {"f.bin": b"earlier"}


@pytest.mark.parametrize("name", ["a" * 250, "é" * 125, "b" * 255], ids=["250-ascii", "250-bytes-utf8", "255"])
def test_names_at_the_file_system_limit_get_temporaries_that_fit(tmp_path, name):
    limit = os.pathconf(tmp_path, "PC_NAME_MAX")
    assert len(name.encode()) <= limit
    tmp = temp_path(tmp_path / name)
    assert len(tmp.name.encode()) <= limit and tmp.parent == tmp_path and tmp.name.startswith(".")
    assert temp_path(tmp_path / name, pid=4_294_967_295).name.startswith(tmp.name[: -len(f"{os.getpid()}")])
    write_file(tmp_path / name, b"ok")
    write_folder(tmp_path / (name[:-1] + "d"), lambda d: (d / "x").write_text("in"))
    assert (tmp_path / name).read_bytes() == b"ok" and (tmp_path / (name[:-1] + "d") / "x").read_text() == "in"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, name[:-1] + "d"])


def test_two_long_names_that_share_a_prefix_get_different_temporaries(tmp_path):
    a, b = "x" * 249 + "a", "x" * 249 + "b"
    assert temp_path(tmp_path / a) != temp_path(tmp_path / b)


# --- write_folder -----------------------------------------------------------------------------------------------


def test_write_folder_replaces_whole_or_not_at_all(tmp_path):
    folder = tmp_path / "out"
    write_folder(folder, lambda d: (d / "one").write_text("1"))
    assert _listing(folder) == {"one": b"1"}

    def failing(d):
        (d / "two").write_text("2")
        raise OSError(errno.EFBIG, "File too large")

    with pytest.raises(OSError, match=r"file-size limit .*earlier one is unchanged"):
        write_folder(folder, failing)
    assert _listing(tmp_path) == {"out/one": b"1"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder beside it
    write_folder(folder, lambda d: (d / "two").write_text("2"))
    assert _listing(folder) == {"two": b"2"}  # the old file is gone: replaced as a whole, not mixed


def test_export_debris_of_a_long_folder_name_is_found(tmp_path):
    folder = tmp_path / ("w" * 250)
    dead = 2**22 + 12345  # above Linux's default pid_max: no process has it
    stale = temp_path(folder, "tmp", dead)
    stale.mkdir()
    (stale / "config.json").write_text("{}")
    assert remove_export_debris(folder) == [stale]
    assert not stale.exists()


# --- failed writes under a file-size limit (ulimit -f) ---------------------------------------------------------


@pytest.mark.slow
def test_write_file_beyond_the_file_size_limit_keeps_the_earlier_file(tmp_path):
    (tmp_path / "f.bin").write_bytes(b"earlier result")
    code = """
        from clmae._atomic import write_file, write_folder
        for call in (lambda: write_file("f.bin", b"x" * (1 << 20)),
                     lambda: write_file("f.bin", lambda f: f.write(b"y" * (1 << 20))),
                     lambda: write_folder("d", lambda d: (d / "big").write_bytes(b"z" * (1 << 20)))):
            try:
                call()
            except OSError as e:
                print("ERROR", e)
    """
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "kept").write_text("earlier folder")
    result = _limited(code, tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("ERROR")]
    assert len(lines) == 3, result.stdout + result.stderr
    assert all("file-size limit" in line and "earlier one is unchanged" in line for line in lines), lines
    assert _listing(tmp_path) == {"f.bin": b"earlier result", "d/kept": b"earlier folder"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "f.bin"]


@pytest.mark.slow
def test_a_checkpoint_beyond_the_file_size_limit_keeps_the_earlier_one(tmp_path):
    """torch.save reports EFBIG as a RuntimeError; it still becomes one line, the earlier checkpoint whole."""
    import torch

    from clmae.train.checkpoint import load_checkpoint, save_checkpoint

    first = {"model": {"w": torch.ones(4)}, "config": {}, "epoch": 1}
    save_checkpoint(first, tmp_path / "checkpoint-0001.pt")
    before = (tmp_path / "checkpoint-0001.pt").read_bytes()
    code = """
        import torch
        from clmae.train.checkpoint import save_checkpoint
        try:
            save_checkpoint({"model": {"w": torch.zeros(1 << 18)}, "config": {}, "epoch": 2}, "checkpoint-0001.pt")
        except OSError as e:
            print("ERROR", e)
    """
    result = _limited(code, tmp_path)
    assert "ERROR" in result.stdout and "file-size limit" in result.stdout, result.stdout + result.stderr
    assert (tmp_path / "checkpoint-0001.pt").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-0001.pt"]
    assert torch.equal(load_checkpoint(tmp_path / "checkpoint-0001.pt")["model"]["w"], torch.ones(4))


def test_checkpoint_bytes_are_what_torch_save_writes(tmp_path):
    """The trainer's checkpoint format is unchanged: the file is exactly torch.save of the state and its digest."""
    import io

    import torch

    from clmae.train.checkpoint import save_checkpoint, state_digest

    state = {"model": {"w": torch.arange(6.0)}, "config": {"a": 1}, "epoch": 3}
    save_checkpoint(state, tmp_path / "c.pt")
    buffer = io.BytesIO()
    torch.save({**state, "digest": state_digest(state)}, buffer)
    assert (tmp_path / "c.pt").read_bytes() == buffer.getvalue()


@pytest.fixture(scope="module")
def extract_inputs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("extract")
    weights = clmae.save_pretrained(tiny_pretrainer(seed=1).eval(), root / "w")
    images = root / "imgs"
    images.mkdir()
    for i in range(3):
        Image.new("L", (28, 28), 40 * i).save(images / f"{i}.png")
    return weights, images


@pytest.mark.slow
def test_clmae_extract_beyond_the_file_size_limit_keeps_the_earlier_features(extract_inputs, tmp_path):
    weights, images = extract_inputs
    out = tmp_path / "f.safetensors"
    assert cli.main(["extract", str(weights), str(images), str(out), "--quiet", "--features", "pooled"]) == 0
    before = out.read_bytes()
    more = tmp_path / "more"
    shutil.copytree(images, more)
    for i in range(3, 40):  # more rows and patch features: a file far beyond the limit
        Image.new("L", (28, 28), i).save(more / f"{i}.png")
    code = f"""
        import sys
        from clmae import cli
        sys.exit(cli.main(["extract", {str(weights)!r}, {str(more)!r}, {str(out)!r}, "--quiet", "--features",
                           "pooled,patch"]))
    """
    result = _limited(code, tmp_path, limit=len(before) + 4096)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert "file-size limit" in lines[0] and str(out) in lines[0]
    assert "cannot write features file" in lines[0] and "[Errno" not in lines[0], lines[0]
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.safetensors", "more"]


def test_clmae_extract_with_a_full_disk_keeps_the_earlier_features(extract_inputs, tmp_path, monkeypatch, capsys):
    weights, images = extract_inputs
    out = tmp_path / "f.safetensors"
    assert cli.main(["extract", str(weights), str(images), str(out), "--quiet"]) == 0
    before = out.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_atomic.os, "fsync", full)
    capsys.readouterr()
    assert cli.main(["extract", str(weights), str(images), str(out), "--quiet", "--features", "pooled,cls"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "no space left" in err[0] and "Traceback" not in err[0], err
    assert out.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["f.safetensors"]


@pytest.mark.slow
def test_clmae_eval_result_beyond_the_file_size_limit_keeps_the_earlier_result(tmp_path):
    data = tmp_path / "ev"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (data / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8), (10, 20, 30)).save(data / split / cls / "x.png")
    argv = ["eval", "knn", "--model", "raw-pixels", "--data", f"imagefolder:{data}", "device=cpu", "cache=false",
            "k=1", "k_weighted=1", "--out", "r.json"]  # fmt: skip
    assert cli.main(["eval", *argv[1:-1], str(tmp_path / "r.json")]) == 0
    before = (tmp_path / "r.json").read_bytes()
    assert json.loads(before)["protocol"] == "knn"
    code = f"""
        import sys
        from clmae import cli
        sys.exit(cli.main({argv!r}))
    """
    result = _limited(code, tmp_path, limit=200)  # a result is a few kB
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "file-size limit" in lines[0], result.stderr
    assert (tmp_path / "r.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ev", "r.json"]
