import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from clmae.data import (
    GlobalBatchSampler,
    SeededDataset,
    SyntheticImages,
    build_pretraining_data,
    pretrain_transform,
)


def _steps(n, batch_size, accum, world, epoch=0, seed=0):
    """Per update: the list of micro-batch chunks (sets of indices) across all processes."""
    per_rank = []
    for rank in range(world):
        s = GlobalBatchSampler(range(n), batch_size, accum, world, rank, seed)
        s.set_epoch(epoch)
        idx = [i for i, _ in s]
        assert len(idx) == len(s)
        per_rank.append([idx[k : k + batch_size] for k in range(0, len(idx), batch_size)])
    steps = len(per_rank[0]) // accum
    return [
        sorted(tuple(sorted(per_rank[r][t * accum + a])) for r in range(world) for a in range(accum))
        for t in range(steps)
    ]


def test_sampler_does_not_depend_on_the_split():
    # Global batch 8 as 1 process x 2 accumulation x 4, 2 processes x 1 x 4, 4 x 2 x 1: same chunks per update.
    a, b = _steps(37, 4, 2, 1), _steps(37, 4, 1, 2)
    assert a == b and len(a) == 37 // 8
    c, d = _steps(37, 2, 2, 2), _steps(37, 2, 1, 4)
    assert c == d
    flat = [i for step in a for chunk in step for i in chunk]
    assert len(set(flat)) == len(flat) == 32  # no repeats, incomplete last global batch dropped
    assert _steps(37, 4, 1, 2, epoch=1) != a  # a new permutation every epoch
    assert _steps(37, 4, 1, 2, epoch=1) == _steps(37, 4, 1, 2, epoch=1)


def test_sampler_seeds_and_errors():
    s = GlobalBatchSampler(range(16), 4, 1, 2, 1, seed=5)
    pairs = list(s)
    assert len({seed for _, seed in pairs}) == len(pairs)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        GlobalBatchSampler(range(7), 4, 1, 2, 0)


def test_seeded_transform_is_a_function_of_the_seed():
    image = Image.fromarray(torch.randint(0, 255, (40, 48, 3), dtype=torch.uint8).numpy())
    ds = SeededDataset([image], pretrain_transform(32))
    torch.manual_seed(0)
    a = ds[(0, 7)]
    torch.randn(100)  # the global generator moved: the sample must not change
    assert torch.equal(ds[(0, 7)], a) and a.shape == (3, 32, 32)
    assert not torch.equal(ds[(0, 8)], a)
    state = torch.get_rng_state()
    ds[(0, 9)]
    assert torch.equal(torch.get_rng_state(), state)  # and the global generator is left alone


def test_mae_augmentation():
    t = pretrain_transform(224)
    crop = t.transforms[0]
    assert isinstance(crop, T.RandomResizedCrop) and crop.scale == (0.2, 1.0)
    assert crop.interpolation == T.InterpolationMode.BICUBIC and crop.size == (224, 224)
    assert isinstance(t.transforms[1], T.RandomHorizontalFlip)
    assert t.transforms[-1].mean == (0.485, 0.456, 0.406) and t.transforms[-1].std == (0.229, 0.224, 0.225)


def test_synthetic_images_are_deterministic():
    ds = SyntheticImages(5, (1, 28, 28), seed=1)
    assert ds[3].shape == (1, 28, 28) and torch.equal(ds[3], SyntheticImages(5, (1, 28, 28), seed=1)[3])
    assert not torch.equal(ds[3], ds[4])
    data = build_pretraining_data("synthetic:5", 1, 28)
    assert len(data.dataset) == 5 and data.dataset[(2, 0)].shape == (1, 28, 28)


def test_fashion_mnist_sample():
    data = build_pretraining_data("fmnist-sample", 1, 28)
    x = data.dataset[(0, 123)]
    assert len(data.dataset) == 1000 and x.shape == (1, 28, 28) and x.dtype == torch.float32
    assert data.mean == (0.2860,) and data.std == (0.3530,)


def _folder(root, n=3, size=(40, 36)):
    (root / "cls").mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", size, (i * 40, 10, 200)).save(root / "cls" / f"{i}.png")
    return root


def test_image_folder(tmp_path):
    data = build_pretraining_data(str(_folder(tmp_path / "imgs")), 3, 32)
    assert len(data.dataset) == 3 and data.dataset[(1, 0)].shape == (3, 32, 32)
    assert data.preview[1].shape == (3, 32, 32)


def test_data_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"not a folder that exists.*synthetic:N"):
        build_pretraining_data(str(tmp_path / "nope"), 3, 32)
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"no images found.*ImageNet-style"):
        build_pretraining_data(str(tmp_path / "empty"), 3, 32)
    bad = tmp_path / "bad" / "cls"
    bad.mkdir(parents=True)
    (bad / "0.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"cannot read image .*0\.jpg.*remove or replace"):
        build_pretraining_data(str(tmp_path / "bad"), 3, 32)
    # an unreadable image found later, while training, names the file too
    good = _folder(tmp_path / "mixed")
    (good / "cls" / "9.jpg").write_bytes(b"\xff\xd8 truncated")
    data = build_pretraining_data(str(good), 3, 32)
    with pytest.raises(ValueError, match=r"9\.jpg"):
        data.dataset[(3, 0)]
    with pytest.raises(ValueError, match="gives 1x28x28 images but the model expects 3x32x32"):
        build_pretraining_data("fmnist-sample", 3, 32)
    with pytest.raises(ValueError, match="synthetic:256"):
        build_pretraining_data("synthetic:many", 1, 28)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_pretraining_data(f"fmnist:{tmp_path / 'nothing'}", 1, 28)


def test_fmnist_root_reads_every_fashion_mnist_spec():
    from pathlib import Path

    from clmae.data import DEBIAN_ROOT, SAMPLE_ROOT, fmnist_root

    assert fmnist_root("fmnist") == fmnist_root("fashion-mnist") == DEBIAN_ROOT
    assert fmnist_root("fmnist-sample") == SAMPLE_ROOT
    assert fmnist_root("fmnist:/data/fm") == fmnist_root("fashion-mnist:/data/fm") == Path("/data/fm")
    for other in ("synthetic:8", "/data/imagenet/train", "imagefolder:/x", "mnist"):
        assert fmnist_root(other) is None
