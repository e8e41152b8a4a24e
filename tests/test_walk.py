"""The one walk over users' folders: links followed, each real folder read once, so link cycles end it; every reader
(training data, clmae extract, evaluation ImageFolders) goes through it."""

import threading

import pytest
from conftest import HANG_GUARD
from PIL import Image

from clmae.data.imagefolder import find_images
from clmae.data.walk import walk_files
from clmae.eval.data import resolve_data


def _image(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (28, 28), 100).save(path)


def _in_time(fn, *args):
    """``fn(*args)``, failing (instead of hanging the suite) if it does not return within HANG_GUARD seconds."""
    result, thread = [], threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)
    thread.start()
    thread.join(timeout=HANG_GUARD)
    assert not thread.is_alive(), "the walk did not end"
    return result[0]


@pytest.fixture
def looped(tmp_path):
    """a/x.png, b/y.png, a/up -> .. (a cycle), b/alias -> ../a (a second link to a), self -> self (a dead loop)."""
    root = tmp_path / "data"
    _image(root / "a" / "x.png")
    _image(root / "b" / "y.png")
    (root / "a" / "up").symlink_to("..")
    (root / "b" / "alias").symlink_to("../a")
    (root / "self").symlink_to("self")
    return root


def test_a_link_cycle_ends_the_walk_with_one_warning(looped, capsys):
    files = _in_time(walk_files, looped)
    assert files == [("a", "x.png"), ("b", "y.png")]
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "a symbolic-link cycle" in err and "1 more" in err


def test_links_to_other_folders_are_followed(tmp_path):
    _image(tmp_path / "elsewhere" / "z.png")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "linked").symlink_to(tmp_path / "elsewhere")
    assert walk_files(tmp_path / "data") == [("linked", "z.png")]


def test_training_and_extract_data_walk_ends(looped):
    assert [p.name for p in _in_time(find_images, looped)] == ["x.png", "y.png"]


def test_evaluation_image_folder_walk_ends(tmp_path):
    root = tmp_path / "ev"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            _image(root / split / cls / "x.png")
        (root / split / "a" / "loop").symlink_to(".")
    data = _in_time(resolve_data, f"imagefolder:{root}")
    ds = _in_time(data.dataset, "train", None, "L")
    assert [(p.split("/")[-2], label) for p, label in ds.samples] == [("a", 0), ("b", 1)]
