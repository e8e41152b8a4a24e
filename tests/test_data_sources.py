"""Pretraining on users' images: folders (flat or nested), WebDataset tar shards, saved Hugging Face data sets."""

import gzip
import io
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import HANG_GUARD, TINY_RUN
from PIL import Image
from torch.utils.data import DataLoader

from clmae.data import (
    GlobalBatchSampler,
    HFDatasetImages,
    ImageFolderImages,
    WebDatasetImages,
    build_pretraining_data,
    expand_braces,
    expand_shards,
    find_images,
    parse_data_spec,
    pretrain_transform,
)
from clmae.train import trainer
from clmae.train.checkpoint import load_checkpoint
from clmae.train.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TINY = TINY_RUN


# ---------------------------------------------------------------------------------------------- images on disk


def _image(i: int) -> Image.Image:
    """Image i: random pixels, its own size, and one of the modes RGB, L, RGBA, P."""
    g = np.random.default_rng(i)
    h, w = 20 + 3 * (i % 5), 18 + 5 * (i % 3)
    mode = ("RGB", "L", "RGBA", "P")[i % 4]
    if mode == "P":
        img = Image.fromarray(g.integers(0, 16, (h, w), dtype=np.uint8), "P")
        img.putpalette(g.integers(0, 256, 16 * 3, dtype=np.uint8).tolist())
        return img
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    pixels = g.integers(0, 256, (h, w, channels), dtype=np.uint8)
    return Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)


def _flat(i: int) -> Image.Image:
    """Image i of the identity tests: one colour, (i, 255 - i, 7), so that a decoded sample says which it is."""
    return Image.new("RGB", (12 + i % 3, 10), (i, 255 - i, 7))


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _ident(img: Image.Image) -> int:
    return int(np.asarray(img.convert("RGB"))[0, 0, 0])


def _write_flat(root: Path, n: int) -> list[Path]:
    root.mkdir(parents=True)
    files = [root / f"img_{i:03d}.png" for i in range(n)]
    for i, f in enumerate(files):
        _image(i).save(f)
    return files


# nested: depth 3, class-like folders and not, mixed-case extensions; hidden entries and other files are ignored
NESTED = ["z.png", "a/b/c/deep.PNG", "a/b/mid.png", "a/top.bmp", "cls1/x.png", "cls1/y.Tiff", "cls2/w.gif", "b.webp"]
IGNORED = [".hidden.png", ".cache/q.png", "a/.git/r.png", "notes.txt", "cls1/labels.json"]


def _write_nested(root: Path) -> dict[Path, Image.Image]:
    written = {}
    for i, rel in enumerate(NESTED + IGNORED):
        f = root / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        img = _image(i)
        if f.suffix.lower() in (".txt", ".json"):
            f.write_text("not an image")
            continue
        if f.suffix.lower() == ".gif" and img.mode == "RGBA":
            img = img.convert("RGB")
        img.save(f)
        if rel in NESTED:
            written[f] = img
    return written


def _reference(path_or_img, mode: str) -> np.ndarray:
    """An independent decode: PIL straight from the file (or the image itself), converted to ``mode``."""
    if isinstance(path_or_img, Image.Image):
        return np.asarray(path_or_img.convert(mode))
    with Image.open(path_or_img) as img:
        return np.asarray(img.convert(mode))


def _eval_reference(img: Image.Image, size: int, mean, std) -> torch.Tensor:
    """MAE's evaluation transform computed by hand with PIL: short side to size / 0.875, centre crop, normalise."""
    w, h = img.size
    short = int(size / 0.875)
    new = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    img = img.resize(new, Image.BICUBIC)
    left, top = round((new[0] - size) / 2), round((new[1] - size) / 2)
    x = np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.float32) / 255
    x = torch.from_numpy(x.reshape(size, size, -1)).permute(2, 0, 1)
    return (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]


# ---------------------------------------------------------------------------------------------- WebDataset shards


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _write_shards(folder: Path, images: list[Image.Image], per_shard: int, prefix: str = "") -> list[Path]:
    """WebDataset layout: per sample KEY.cls and KEY.json beside KEY.png (the .cls first, to check the grouping)."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for s in range(0, len(images), per_shard):
        shard = folder / f"shard-{s // per_shard:06d}.tar"
        with tarfile.open(shard, "w") as tar:
            for i in range(s, min(s + per_shard, len(images))):
                key = f"{prefix}{i:06d}"
                _add(tar, f"{key}.cls", str(i % 3).encode())
                _add(tar, f"{key}.png", _png(images[i]))
                _add(tar, f"{key}.json", b'{"id": %d}' % i)
        shards.append(shard)
    return shards


# ---------------------------------------------------------------------------------------------- HF datasets


def _save_hfds(path: Path, images: list, splits: tuple[str, ...] | None = None, column: str = "image") -> Path:
    datasets = pytest.importorskip("datasets")
    datasets.disable_progress_bars()
    features = datasets.Features({column: datasets.Image(), "label": datasets.Value("int64")})
    ds = datasets.Dataset.from_dict({column: images, "label": list(range(len(images)))}, features=features)
    if splits is None:
        ds.save_to_disk(str(path))
    else:
        half = ds.select(range(len(images) // 2))
        datasets.DatasetDict({s: ds if s == splits[0] else half for s in splits}).save_to_disk(str(path))
    return path


# ---------------------------------------------------------------------------------------------- folders


def test_flat_folder_samples_equal_an_independent_decode(tmp_path):
    files = _write_flat(tmp_path / "flat", 6)
    source = ImageFolderImages(tmp_path / "flat")
    assert len(source) == len(files) and source.files == [str(f) for f in files]
    for i, f in enumerate(files):
        got = source[i]
        assert got.mode == "RGB" and np.array_equal(np.asarray(got), _reference(f, "RGB"))
    data = build_pretraining_data(f"imagefolder:{tmp_path / 'flat'}", 3, 32)
    assert len(data.dataset) == 6 and "6 images" in data.description
    assert tuple(data.mean) == IMAGENET_MEAN and tuple(data.std) == IMAGENET_STD
    for i in (0, 2, 3):  # RGB, RGBA, P files
        with Image.open(files[i]) as img:
            expected = _eval_reference(img.convert("RGB"), 32, IMAGENET_MEAN, IMAGENET_STD)
        assert torch.allclose(data.preview[i], expected, atol=1e-6)
        torch.manual_seed(5)
        augmented = pretrain_transform(32, IMAGENET_MEAN, IMAGENET_STD)(Image.open(files[i]).convert("RGB"))
        assert torch.equal(data.dataset[(i, 5)], augmented) and augmented.shape == (3, 32, 32)


def test_nested_folder_is_scanned_recursively_in_sorted_order(tmp_path):
    written = _write_nested(tmp_path / "tree")
    found = find_images(tmp_path / "tree")
    assert set(found) == set(written)  # hidden files and folders, .txt and .json left out
    assert [f.relative_to(tmp_path / "tree").parts for f in found] == sorted(Path(r).parts for r in NESTED)
    assert find_images(tmp_path / "tree") == found
    source = ImageFolderImages(tmp_path / "tree", mode="L")
    for i, f in enumerate(found):
        assert np.array_equal(np.asarray(source[i]), _reference(f, "L"))
    # a 1-channel model: greyscale, the mean of ImageNet's statistics
    data = build_pretraining_data(str(tmp_path / "tree"), 1, 28)
    grey_mean, grey_std = sum(IMAGENET_MEAN) / 3, sum(IMAGENET_STD) / 3
    assert data.mean == pytest.approx([grey_mean]) and data.std == pytest.approx([grey_std])
    assert data.dataset[(4, 1)].shape == (1, 28, 28)
    with Image.open(found[4]) as img:
        expected = _eval_reference(img.convert("L"), 28, (grey_mean,), (grey_std,))
    assert torch.allclose(data.preview[4], expected, atol=1e-6)


def test_folder_errors_are_clear(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "other" / ".hidden").mkdir(parents=True)
    (tmp_path / "other" / "readme.txt").write_text("x")
    _image(0).save(tmp_path / "other" / ".hidden" / "a.png")
    for folder in ("empty", "other"):  # the 28 px Fashion-MNIST model: still "no images", not a size mismatch
        with pytest.raises(FileNotFoundError, match=rf"no images found in .*{folder} \(looked for \.jpg, .*\.png"):
            build_pretraining_data(str(tmp_path / folder), 1, 28)
    with pytest.raises(FileNotFoundError, match="not a folder that exists"):
        build_pretraining_data(str(tmp_path / "missing"), 3, 32)
    with pytest.raises(ValueError, match="is a file, not a folder"):
        build_pretraining_data(str(tmp_path / "other" / "readme.txt"), 3, 32)
    _write_flat(tmp_path / "ok", 2)
    with pytest.raises(ValueError, match="4 input channels does not fit"):
        build_pretraining_data(str(tmp_path / "ok"), 4, 32)


def _with_bad_files(root: Path) -> list[Path]:
    files = _write_flat(root, 4)
    (root / "img_001b.png").write_bytes(b"\x89PNG not really")
    jpeg = io.BytesIO()
    _image(0).save(jpeg, "JPEG")
    (root / "img_002b.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) * 2 // 3])  # opens, then truncated
    return files


def test_unreadable_images_stop_or_are_left_out(tmp_path):
    files = _with_bad_files(tmp_path / "bad")
    data = build_pretraining_data(str(tmp_path / "bad"), 3, 32)  # the first image is fine: the run starts
    assert len(data.dataset) == 6
    with pytest.raises(ValueError, match=r"cannot read image .*img_001b\.png.*skip_unreadable"):
        data.dataset[(2, 0)]
    with pytest.raises(ValueError, match=r"cannot read image .*img_002b\.jpg.*truncated"):
        data.dataset[(4, 0)]
    data = build_pretraining_data(str(tmp_path / "bad"), 3, 32, skip_unreadable=True)
    assert len(data.dataset) == 4 and "4 images (2 unreadable left out)" in data.description
    source = data.dataset.source
    for i, f in enumerate(files):
        assert np.array_equal(np.asarray(source[i]), _reference(f, "RGB"))
    (tmp_path / "allbad").mkdir()
    (tmp_path / "allbad" / "x.png").write_bytes(b"nothing")
    with pytest.raises(ValueError, match=r"cannot read image .*x\.png"):
        build_pretraining_data(str(tmp_path / "allbad"), 3, 32)
    with pytest.raises(ValueError, match="none of the 1 images"):
        build_pretraining_data(str(tmp_path / "allbad"), 3, 32, skip_unreadable=True)


def test_sixteen_bit_and_transparent_palette_images(tmp_path):
    deep = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 300
    Image.fromarray(deep).save(tmp_path / "a16.png")
    palette = Image.fromarray(np.arange(12 * 16, dtype=np.uint8).reshape(12, 16) % 4, "P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255])
    palette.save(tmp_path / "b.png", transparency=b"\x00\xff\xff\xff")
    source = ImageFolderImages(tmp_path, mode="L")
    assert np.array_equal(np.asarray(source[0]), (deep >> 8).astype(np.uint8))  # scaled, not clipped at 255
    source.mode = "RGB"
    rgb = np.asarray(source[1])
    colours = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)
    assert np.array_equal(rgb, colours[np.asarray(palette)])


def test_samples_with_two_images_use_the_first(tmp_path):
    with tarfile.open(tmp_path / "s.tar", "w") as tar:
        _add(tar, "a/0001.png", _png(_flat(1)))
        _add(tar, "a/0001.jpg", _png(_flat(2)))  # same key: the same sample, its first image is used
        _add(tar, "./b/0002.extra.png", _png(_flat(3)))  # key b/0002, extension "extra.png": not an image member
        _add(tar, "./b/0003.PNG", _png(_flat(4)))
    source = WebDatasetImages(tmp_path / "s.tar")
    assert source.keys() == ["a/0001", "b/0003"] and [_ident(source[i]) for i in range(2)] == [1, 4]


# ---------------------------------------------------------------------------------------------- spec grammar


def test_spec_grammar():
    assert expand_braces("s-{000..002}.tar") == ["s-000.tar", "s-001.tar", "s-002.tar"]
    assert expand_braces("s{8..10}") == ["s8", "s9", "s10"]
    assert expand_braces("{a,b}/{0..1}") == ["a/0", "a/1", "b/0", "b/1"]
    assert expand_braces("x{a,b{1..2}}") == ["xa", "xb1", "xb2"]
    for bad, msg in [("s{3..1}", "is empty"), ("s{}", "empty braces"), ("s{1..2", "unbalanced"), ("s}", "unbalanced")]:
        with pytest.raises(ValueError, match=msg):
            parse_data_spec(f"wds:/d/{bad}.tar")
    wds = parse_data_spec("wds:/d/shard-{000000..000099}.tar")
    assert wds.kind == "wds" and str(wds.root) == "/d/shard-{000000..000099}.tar"
    assert parse_data_spec("hfds:/d/set").split is None and parse_data_spec("hfds:/d/set#val").split == "val"
    for bad in ("wds:", "hfds:", "hfds:/d#"):
        with pytest.raises(ValueError, match="write"):
            parse_data_spec(bad)
    for spec in ("wds:/d/*.tar", "hfds:/d", "synthetic:4"):
        assert not parse_data_spec(spec).labelled
    for spec in ("fmnist-sample", "imagefolder:/d", "/d"):
        assert parse_data_spec(spec).labelled


# ---------------------------------------------------------------------------------------------- WebDataset


def test_webdataset_shards_every_pattern_form(tmp_path):
    images = [_image(i) for i in range(7)]
    shards = _write_shards(tmp_path / "wds", images, per_shard=3)
    d = tmp_path / "wds"
    for pattern in (
        f"{d}/shard-{{000000..000002}}.tar",
        f"{d}/shard-{{000000,000001,000002}}.tar",
        f"{d}/shard-*.tar",
        f"{d}/",
        str(d),
    ):
        assert expand_shards(pattern) == shards, pattern
        source = WebDatasetImages(pattern)
        assert len(source) == 7 and source.keys() == [f"{i:06d}" for i in range(7)]  # .cls/.json not samples
        assert source.counts == [3, 3, 1]
    for i in range(7):
        assert np.array_equal(np.asarray(source[i]), _reference(images[i], "RGB"))
    data = build_pretraining_data(f"wds:{d}/shard-{{000000..000002}}.tar", 3, 32)
    assert len(data.dataset) == 7 and "WebDataset shards" in data.description and "7 images" in data.description
    assert torch.allclose(data.preview[3], _eval_reference(images[3].convert("RGB"), 32, IMAGENET_MEAN, IMAGENET_STD))
    assert "shard-000001.tar" in source.name(4) and "000004.png" in source.name(4)
    # a copy (as a spawned DataLoader worker gets) opens its own files and reads the same bytes
    copy = pickle.loads(pickle.dumps(source))
    assert copy._files == {} and copy.read(5) == source.read(5) == _png(images[5])


def test_webdataset_reads_the_same_in_worker_processes(tmp_path):
    _write_shards(tmp_path / "wds", [_image(i) for i in range(8)], per_shard=3)
    data = build_pretraining_data(f"wds:{tmp_path / 'wds'}", 3, 16)
    data.preview[0]  # the parent has shards open before the workers fork

    def batches(workers):
        sampler = GlobalBatchSampler(data.dataset, 4, 1, 1, 0, seed=3)
        return list(DataLoader(data.dataset, batch_size=4, sampler=sampler, num_workers=workers))

    one, two = batches(0), batches(2)
    assert len(one) == len(two) == 2 and all(torch.equal(a, b) for a, b in zip(one, two))


def test_webdataset_errors_are_clear(tmp_path):
    _write_shards(tmp_path / "wds", [_image(i) for i in range(4)], per_shard=2)
    d = tmp_path / "wds"
    with pytest.raises(FileNotFoundError, match=r"shard .*shard-000002\.tar does not exist"):
        build_pretraining_data(f"wds:{d}/shard-{{000000..000002}}.tar", 3, 32)
    with pytest.raises(FileNotFoundError, match="no shard matches"):
        build_pretraining_data(f"wds:{d}/other-*.tar", 3, 32)
    (tmp_path / "none").mkdir()
    with pytest.raises(FileNotFoundError, match=r"no \.tar shards in folder"):
        build_pretraining_data(f"wds:{tmp_path / 'none'}", 3, 32)
    (tmp_path / "junk.tar").write_bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match=r"junk\.tar is not a readable tar file"):
        build_pretraining_data(f"wds:{tmp_path / 'junk.tar'}", 3, 32)
    (tmp_path / "zipped.tar").write_bytes(gzip.compress((d / "shard-000000.tar").read_bytes()))
    with pytest.raises(ValueError, match=r"zipped\.tar is gzip-compressed.*uncompressed"):
        build_pretraining_data(f"wds:{tmp_path / 'zipped.tar'}", 3, 32)
    with tarfile.open(tmp_path / "labels.tar", "w") as tar:
        _add(tar, "000000.cls", b"1")
        _add(tar, ".000001.png", _png(_image(1)))  # hidden: not a sample
    with pytest.raises(ValueError, match=r"labels\.tar holds no images"):
        build_pretraining_data(f"wds:{tmp_path / 'labels.tar'}", 3, 32)
    with pytest.raises(ValueError, match="brace range"):
        build_pretraining_data(f"wds:{d}/shard-{{000002..000000}}.tar", 3, 32)


def test_webdataset_unreadable_sample(tmp_path):
    images = [_image(i) for i in range(5)]
    shard = _write_shards(tmp_path / "wds", images, per_shard=5)[0]
    with tarfile.open(shard, "a") as tar:
        _add(tar, "000005.png", b"\x89PNG broken")
    data = build_pretraining_data(f"wds:{shard}", 3, 32)
    with pytest.raises(ValueError, match=r"cannot read image 000005\.png in shard .*shard-000000\.tar"):
        data.dataset[(5, 0)]
    data = build_pretraining_data(f"wds:{shard}", 3, 32, skip_unreadable=True)
    assert len(data.dataset) == 5 and "(1 unreadable left out)" in data.description
    assert data.dataset.source.keys() == [f"{i:06d}" for i in range(5)]


# ---------------------------------------------------------------------------------------------- Hugging Face


def test_hf_dataset_and_dataset_dict(tmp_path):
    images = [_image(i) for i in range(6)]
    plain = _save_hfds(tmp_path / "plain", images)
    source = HFDatasetImages(plain, mode="L")
    assert len(source) == 6
    for i, img in enumerate(images):
        assert np.array_equal(np.asarray(source[i]), _reference(img, "L"))
    data = build_pretraining_data(f"hfds:{plain}", 3, 32)
    assert len(data.dataset) == 6 and "Hugging Face data set" in data.description
    expected = _eval_reference(images[2].convert("RGB"), 32, IMAGENET_MEAN, IMAGENET_STD)
    assert torch.allclose(data.preview[2], expected, atol=1e-6)
    splits = _save_hfds(tmp_path / "dict", images, splits=("train", "test"))
    assert len(build_pretraining_data(f"hfds:{splits}", 3, 32).dataset) == 6
    test = build_pretraining_data(f"hfds:{splits}#test", 3, 32)
    assert len(test.dataset) == 3 and "split test" in test.description
    assert np.array_equal(np.asarray(test.dataset.source[1]), _reference(images[1], "RGB"))
    # an "img" column that is not an Image feature: encoded bytes
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"img": [_png(im) for im in images[:3]], "n": [0, 1, 2]}).save_to_disk(
        str(tmp_path / "bytes")
    )
    source = HFDatasetImages(tmp_path / "bytes")
    assert source.column == "img" and np.array_equal(np.asarray(source[2]), _reference(images[2], "RGB"))


def test_hf_dataset_errors_are_clear(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    images = [_image(i) for i in range(4)]
    splits = _save_hfds(tmp_path / "dict", images, splits=("validation", "test"))
    with pytest.raises(ValueError, match=r"no split 'train'; its splits are validation, test.*#SPLIT"):
        build_pretraining_data(f"hfds:{splits}", 3, 32)
    with pytest.raises(ValueError, match=r"no split 'val'; its splits are validation, test"):
        build_pretraining_data(f"hfds:{splits}#val", 3, 32)
    plain = _save_hfds(tmp_path / "plain", images)
    with pytest.raises(ValueError, match="one Dataset, not a DatasetDict"):
        build_pretraining_data(f"hfds:{plain}#train", 3, 32)
    datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}).save_to_disk(str(tmp_path / "text"))
    with pytest.raises(ValueError, match="no image column among text, label"):
        build_pretraining_data(f"hfds:{tmp_path / 'text'}", 3, 32)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_pretraining_data(f"hfds:{tmp_path / 'missing'}", 3, 32)
    (tmp_path / "notds").mkdir()
    with pytest.raises(FileNotFoundError, match="not a saved Hugging Face data set"):
        build_pretraining_data(f"hfds:{tmp_path / 'notds'}", 3, 32)
    bad = _save_hfds(tmp_path / "bad", [*images, {"bytes": b"\x89PNG broken", "path": None}])
    with pytest.raises(ValueError, match=r"cannot read image row 4 of .*bad.*column image"):
        build_pretraining_data(f"hfds:{bad}", 3, 32).dataset[(4, 0)]
    assert len(build_pretraining_data(f"hfds:{bad}", 3, 32, skip_unreadable=True).dataset) == 4
    monkeypatch.setitem(sys.modules, "datasets", None)  # as if not installed
    with pytest.raises(ImportError, match=r"needs the `datasets` package: pip install 'clmae\[data\]'") as e:
        build_pretraining_data(f"hfds:{plain}", 3, 32)
    assert isinstance(e.value, ValueError)  # the command line prints it as one line


# ---------------------------------------------------------------------------------------------- ranks


@pytest.mark.parametrize("form", ["wds", "hfds"])
def test_two_ranks_read_disjoint_samples_that_cover_the_epoch(tmp_path, form):
    n = 24
    images = [_flat(i) for i in range(n)]
    if form == "wds":
        _write_shards(tmp_path / "wds", images, per_shard=5)
        source = WebDatasetImages(tmp_path / "wds")
    else:
        source = HFDatasetImages(_save_hfds(tmp_path / "hf", images))
    assert sorted(_ident(source[i]) for i in range(n)) == list(range(n))
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            sampler = GlobalBatchSampler(source, 4, 1, num_replicas=2, rank=rank, seed=1)
            sampler.set_epoch(epoch)
            seen.append([_ident(source[i]) for i, _ in sampler])
        assert len(seen[0]) == len(seen[1]) == n // 2
        assert not set(seen[0]) & set(seen[1]) and sorted(seen[0] + seen[1]) == list(range(n))


# ---------------------------------------------------------------------------------------------- end to end


def _config(out: Path, data: str, **overrides) -> TrainConfig:
    values = {
        "model": "vit_tiny_patch4_32",
        "model_kwargs": TINY,
        "data": data,
        "epochs": 2,
        "warmup_epochs": 1,
        "batch_size": 8,
        "base_lr": 1e-3,
        "out": str(out),
        "log_every": 1,
        "vis_every": 0,
        "vis_images": 2,
        "keep_checkpoints": 0,
        "export": False,
        "progress": False,
        "device": "cpu",
    }
    return TrainConfig.from_dict({**values, **overrides})


def _data_form(tmp_path: Path, form: str, n: int = 16) -> str:
    images = [_image(i) for i in range(n)]
    if form == "folder":
        root = tmp_path / "imgs"
        for i, img in enumerate(images):
            (root / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
            img.save(root / f"c{i % 2}" / f"{i}.png")
        return str(root)
    if form == "wds":
        _write_shards(tmp_path / "wds", images, per_shard=6)
        return f"wds:{tmp_path / 'wds'}/shard-{{000000..000002}}.tar"
    return f"hfds:{_save_hfds(tmp_path / 'hf', images, splits=('train',))}"


@pytest.mark.parametrize("form", ["folder", "wds", "hfds"])
def test_train_and_resume_on_each_data_form(tmp_path, form, capsys):
    data = _data_form(tmp_path, form)
    straight = trainer.train(_config(tmp_path / "run", data))
    assert straight["step"] == 2 * 16 // 8
    assert "16 images" in capsys.readouterr().out
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(tmp_path / "run" / "checkpoint-0001.pt", resumed)
    trainer.train(_config(resumed, data), resume="auto")
    a = load_checkpoint(tmp_path / "run" / "checkpoint-0002.pt")["model"]
    b = load_checkpoint(resumed / "checkpoint-0002.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    start = load_checkpoint(tmp_path / "run" / "checkpoint-0001.pt")["model"]
    assert any(not torch.equal(a[k], start[k]) for k in a)  # epoch 2 did train


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.integration
def test_torchrun_two_processes_on_webdataset_shards(tmp_path):
    data = _data_form(tmp_path, "wds")
    overrides = [f"model_kwargs.{k}={v}" for k, v in TINY.items()]
    common = ["model=vit_tiny_patch4_32", "epochs=1", "batch_size=4", "device=cpu", "export=false", "progress=false"]
    common += ["vis_every=0", "warmup_epochs=1", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def run(launcher, out, *args):
        cmd = [sys.executable, *launcher, "-m", "clmae", "train", "--data", data, "--out", str(out), *common, *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=HANG_GUARD)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    torchrun = ["-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2", "--master_addr=127.0.0.1"]
    out = run([*torchrun, f"--master_port={_free_port()}"], tmp_path / "ddp", "accum_iter=1")
    assert "2 process(es) on cpu, global batch 8 (4 x 1 accumulation x 2)" in out and "WebDataset shards" in out
    run([], tmp_path / "one", "accum_iter=2")
    a = load_checkpoint(tmp_path / "ddp" / "checkpoint-0001.pt")
    b = load_checkpoint(tmp_path / "one" / "checkpoint-0001.pt")
    assert a["step"] == b["step"] == 16 // 8
    assert max((a["model"][k] - b["model"][k]).abs().max().item() for k in a["model"]) < 1e-5
