"""Bad inputs of training: numbers the commands accept must work or be refused, naming the argument, before anything
is written (not even ``--out``); a resume on other data than the checkpoint's is refused unless asked for.

Each case runs ``clmae.cli.main`` in-process in an empty working directory: exit code 2, one line on stderr naming the
argument, no traceback, and no file or folder created, changed or removed (the checks of tests/test_bad_inputs.py)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_RUN
from PIL import Image
from test_bad_inputs import _snapshot

from clmae import cli
from clmae.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [f"model_kwargs.{k}={v}" for k, v in TINY_RUN.items()]
TRAIN = [
    "train",
    "device=cpu",
    "model=vit_tiny_patch4_28",
    *TINY,
    "epochs=1",
    "batch_size=8",
    "vis_every=0",
    "vis_images=2",
    "progress=false",
    "export=false",
]


def _train(data: str, out: Path | str, *extra: str) -> list[str]:
    return [*TRAIN, "--data", data, "--out", str(out), *extra]


def image_folder(root: Path, n: int = 32, seed: int = 0) -> Path:
    """``n`` random 28x28 greyscale PNG files, ``000.png`` ...; another ``seed`` gives other pixels, same names."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(root / f"{i:03d}.png")
    return root


def _run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, [line for line in err.splitlines() if line.strip()]


@dataclass(frozen=True)
class Case:
    """One bad number: ``argv(work, checkpoint)`` and the words the one line must hold (and must not)."""

    id: str
    argv: Callable[[Path, Path], list[str]]
    words: tuple[str, ...]
    absent: tuple[str, ...] = ()


CASES = [
    Case("train-global-batch-zero", lambda w, c: _train("synthetic:16", w / "out", "global_batch=0"),
         ("global_batch must be >= 1", "got 0")),
    Case("train-global-batch-negative", lambda w, c: _train("synthetic:16", w / "out", "global_batch=-8"),
         ("global_batch must be >= 1", "got -8"), ("learning rate",)),
    Case("train-global-batch-not-multiple", lambda w, c: _train("synthetic:16", w / "out", "global_batch=12"),
         ("global_batch 12", "batch_size 8")),
    Case("train-drop-path-rate-above-one", lambda w, c: _train("synthetic:16", w / "out",
                                                               "model_kwargs.drop_path_rate=2"),
         ("drop_path_rate=2", "[0, 1)")),
    Case("train-drop-rate-negative", lambda w, c: _train("synthetic:16", w / "out", "model_kwargs.drop_rate=-0.1"),
         ("drop_rate=-0.1", "[0, 1)")),
    Case("train-img-size-not-multiple-of-patch", lambda w, c: _train("synthetic:16", w / "out",
                                                                     "model_kwargs.img_size=30"),
         ("img_size 30x30", "patch size 4", "model_kwargs.img_size")),
    Case("train-seed-negative", lambda w, c: _train("synthetic:16", w / "out", "seed=-1"), ("seed must be >= 0",)),
    Case("train-seed-beyond-numpy", lambda w, c: _train("synthetic:16", w / "out", f"seed={2**32}"),
         ("seed must be <=",)),
    Case("train-lr-negative", lambda w, c: _train("synthetic:16", w / "out", "lr=-1"), ("lr must be > 0", "got -1")),
    Case("train-base-lr-zero", lambda w, c: _train("synthetic:16", w / "out", "base_lr=0"), ("base_lr must be > 0",)),
    Case("visualize-num-images-zero", lambda w, c: ["visualize", str(c), "--out", str(w / "out"), "--num-images", "0"],
         ("--num-images", ">= 1", "got 0")),
    Case("visualize-num-images-negative", lambda w, c: ["visualize", str(c), "--out", str(w / "out"),
                                                        "--num-images", "-3"], ("--num-images", "got -3")),
]  # fmt: skip


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """The checkpoint of a finished one-epoch run on ``synthetic:16``."""
    out = tmp_path_factory.mktemp("run") / "out"
    assert cli.main(_train("synthetic:16", out)) == 0
    return list_checkpoints(out)[-1]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_number_is_one_line_naming_it_before_anything_is_written(case, checkpoint, tmp_path, monkeypatch, capsys):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    argv = case.argv(work, checkpoint)
    before = _snapshot(work, checkpoint.parent)
    code, lines = _run_cli(argv, capsys)
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"clmae {argv[0]}: error: "), lines
    for word in case.words:
        assert word.lower() in lines[0].lower(), f"{word!r} not in: {lines[0]}"
    for word in case.absent:
        assert word.lower() not in lines[0].lower(), f"{word!r} in: {lines[0]}"
    assert not (work / "out").exists()
    after = _snapshot(work, checkpoint.parent)
    assert before == after, sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))


# --- Resume on other data ------------------------------------------------------------------------------------------


def _refused(argv: list[str], out: Path, capsys, *words: str) -> None:
    before = _snapshot(out)
    code, lines = _run_cli(argv, capsys)
    assert code == 2 and len(lines) == 1, lines
    for word in ("cannot resume", "allow_data_change=true", *words):
        assert word in lines[0], lines[0]
    assert _snapshot(out) == before  # nothing written, nothing set aside


def _step_checkpoint(tmp_path: Path, data: str, capsys) -> Path:
    """A two-epoch run on ``data`` (4 updates each) of which only the checkpoint after update 2 is kept, as if it had
    stopped there."""
    out = tmp_path / "out"
    code, lines = _run_cli(_train(data, out, "save_every_steps=2", "epochs=2", "keep_checkpoints=0"), capsys)
    assert code == 0, lines
    for path in list_checkpoints(out)[1:]:  # keep checkpoint-0000-00000002.pt: the run continues from there
        path.unlink()
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-0000-00000002.pt"]
    return out


def test_resume_on_a_folder_whose_images_were_all_replaced_is_refused_unless_allowed(tmp_path, capsys):
    images = image_folder(tmp_path / "images")
    out = _step_checkpoint(tmp_path, str(images), capsys)
    image_folder(images, seed=1)  # same names, same count, other pixels
    argv = _train(str(images), out, "save_every_steps=2", "epochs=2", "keep_checkpoints=0", "--resume", "auto")
    _refused(argv, out, capsys, "other image contents", str(images))
    code, lines = _run_cli([*argv, "allow_data_change=true"], capsys)
    assert code == 0, lines
    assert load_checkpoint(list_checkpoints(out)[-1])["step"] == 8  # went on to the end of the 2 x 4 updates


def test_resume_after_switching_from_synthetic_to_a_folder_of_as_many_images_is_refused(tmp_path, capsys):
    out = _step_checkpoint(tmp_path, "synthetic:32", capsys)
    images = image_folder(tmp_path / "images")
    argv = _train(str(images), out, "save_every_steps=2", "epochs=2", "keep_checkpoints=0", "--resume", "auto")
    _refused(argv, out, capsys, "another kind of source")


def test_resume_on_a_moved_folder_with_the_same_files_is_accepted(tmp_path, capsys):
    images = image_folder(tmp_path / "images")
    out = _step_checkpoint(tmp_path, str(images), capsys)
    moved = shutil.move(images, tmp_path / "moved")  # data may change: only its contents matter
    argv = _train(str(moved), out, "save_every_steps=2", "epochs=2", "keep_checkpoints=0", "--resume", "auto")
    code, lines = _run_cli(argv, capsys)
    assert code == 0, lines


def test_resume_refuses_a_renamed_file_and_an_older_checkpoint_resumes_with_a_note(tmp_path, capsys):
    images = image_folder(tmp_path / "images")
    out = _step_checkpoint(tmp_path, str(images), capsys)
    (images / "031.png").rename(images / "zzz.png")  # the last image: same bytes, another name
    argv = _train(str(images), out, "save_every_steps=2", "epochs=2", "keep_checkpoints=0", "--resume", "auto")
    _refused(argv, out, capsys, "other file names")
    (images / "zzz.png").rename(images / "031.png")
    path = list_checkpoints(out)[-1]
    state = load_checkpoint(path)
    state.pop("digest", None)
    del state["data_fingerprint"]  # as written by a version without fingerprints
    save_checkpoint(state, path)
    capsys.readouterr()
    assert cli.main(argv) == 0
    assert "records no fingerprint of its data" in capsys.readouterr().out
