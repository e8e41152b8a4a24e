"""Evaluation on device-held tensors (Fashion-MNIST): the same numbers as the PIL / DataLoader path it replaces.

Every comparison is against the old path (PIL transform + DataLoader, still used for image folders), against PIL
itself, or against a copy of the code that was replaced -- never against numbers the new code produced.
"""

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps
from timm.utils import random_seed
from torch import nn

from clmae.data.transforms import augment_finetune as da
from clmae.data.transforms.device import TensorSplit
from clmae.data.transforms.identity import identity_at_model_size, normalize_uint8
from clmae.data.transforms.numbers import pil_mode
from clmae.data.transforms.pil import eval_transform_for
from clmae.eval import (
    LinearProbeConfig,
    extract_features,
    features_for,
    linear_probe_cached,
    resolve_data,
    resolve_model,
    run_eval,
)
from clmae.eval.features import data_config
from clmae.eval.knn import knn_metrics, topk_accuracy
from clmae.eval.linear import LinearHead, _steps, lars
from clmae.models import FMNIST_CFG
from clmae.train.schedule import lr_at, set_lr

TINY_ENCODER = {"embed_dim": 32, "depth": 1, "num_heads": 2}


def _grey(n: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("spec", ["vit_tiny_patch4_28", "raw-pixels"])
def test_tensor_features_equal_the_pil_dataloader_features(spec, one_thread):
    model = resolve_model(spec, overrides=None if spec == "raw-pixels" else TINY_ENCODER)
    data = resolve_data("fmnist-sample")
    encoder = None if model.is_raw else model.encoder()
    cfg = data_config(model, encoder, data)
    assert identity_at_model_size(cfg, (28, 28))
    new = features_for(model, data, batch_size=64, use_cache=False, encoder=encoder, train_limit=150, val_limit=70)
    tf, mode = eval_transform_for(cfg), pil_mode(cfg["input_size"][0])
    for split, limit, feats, labels in (
        ("train", 150, new.train, new.train_labels),
        ("val", 70, new.val, new.val_labels),
    ):
        old, old_labels = extract_features(encoder, data.dataset(split, tf, mode, limit), 64)
        assert torch.equal(old_labels, labels)
        for pool in ("cls", "avg"):
            assert torch.equal(old[pool], feats[pool]), (split, pool)  # bit for bit on the CPU


@pytest.mark.parametrize("channels", [1, 3])
def test_normalize_uint8_is_the_eval_transform_bit_for_bit(channels):
    cfg = {**FMNIST_CFG, "input_size": (channels, 28, 28)}
    if channels == 3:
        cfg.update(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    images = _grey(5)
    tf = eval_transform_for(cfg)
    mode = "L" if channels == 1 else "RGB"
    expected = torch.stack([tf(Image.fromarray(im.numpy(), "L").convert(mode)) for im in images])
    assert torch.equal(normalize_uint8(images, cfg), expected)


def test_only_identity_transforms_take_the_tensor_path():
    assert identity_at_model_size(FMNIST_CFG, (28, 28))
    assert not identity_at_model_size({**FMNIST_CFG, "crop_pct": 0.875}, (28, 28))  # resizes to 32 first
    assert not identity_at_model_size({k: v for k, v in FMNIST_CFG.items() if k != "crop_pct"}, (28, 28))
    assert not identity_at_model_size(FMNIST_CFG, (32, 32))
    assert not identity_at_model_size({**FMNIST_CFG, "crop_mode": "squash"}, (28, 28))


def _old_linear_probe_cached(train_x, train_y, val_x, val_y, num_classes, cfg):
    """clmae 0.x's linear_probe_cached and train_head before the device path (a copy: loss.item() every step,
    evaluation on the CPU)."""
    random_seed(cfg.seed)
    head = LinearHead(train_x.shape[1], num_classes)
    steps, drop_last = _steps(train_x.shape[0], cfg.batch_size)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = lars(head, cfg.lr, cfg.momentum, cfg.weight_decay)
    total_steps, warmup_steps = cfg.epochs * steps, cfg.warmup_epochs * steps
    losses = []
    for epoch in range(cfg.epochs):
        head.train()
        order = torch.randperm(train_x.shape[0], generator=gen)
        total, n = 0.0, 0
        for s in range(steps):
            idx = order[s * cfg.batch_size : (s + 1) * cfg.batch_size] if drop_last else order
            set_lr([opt], lr_at(epoch * steps + s, total_steps, warmup_steps, cfg.lr, cfg.min_lr))
            loss = nn.functional.cross_entropy(head(train_x[idx]), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item(), n + 1
        losses.append(total / max(n, 1))
    head.eval()
    with torch.no_grad():
        scores = head(val_x)
    return topk_accuracy(scores, val_y), losses


def test_cached_linear_probe_gives_the_old_numbers(one_thread):
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(10, 16, generator=g) * 2
    train_y, val_y = torch.randint(0, 10, (700,), generator=g), torch.randint(0, 10, (300,), generator=g)
    train_x = centres[train_y] + torch.randn(700, 16, generator=g) * 1.5
    val_x = centres[val_y] + torch.randn(300, 16, generator=g) * 1.5
    cfg = LinearProbeConfig(mode="cached", epochs=6, warmup_epochs=1, batch_size=64, base_lr=20.0, seed=3)
    new = linear_probe_cached(train_x, train_y, val_x, val_y, 10, cfg)
    old, losses = _old_linear_probe_cached(train_x, train_y, val_x, val_y, 10, cfg)
    assert 0.2 < old["top1"] < 1, old  # above chance (0.1), not perfect: the comparison means something
    assert new["top1"] == pytest.approx(old["top1"], abs=1e-12)
    assert new["top5"] == pytest.approx(old["top5"], abs=1e-12)
    assert new["train_loss"] == losses[-1]  # float64 sum on the device == the Python float sum


def test_knn_on_a_device_argument_gives_the_same_votes():
    g = torch.Generator().manual_seed(0)
    train, val = torch.randn(200, 8, generator=g), torch.randn(50, 8, generator=g)
    ty, vy = torch.randint(0, 4, (200,), generator=g), torch.randint(0, 4, (50,), generator=g)
    assert knn_metrics(train, ty, val, vy, 4, device="cpu") == knn_metrics(train, ty, val, vy, 4)


# --- fine-tuning's augmentation on the device, op by op against Pillow ---------------------------------------------


def _pil(images: torch.Tensor) -> list[Image.Image]:
    return [Image.fromarray(im.numpy(), "L") for im in images]


def _back(x: torch.Tensor) -> np.ndarray:
    return x[:, 0].to(torch.uint8).numpy()


def test_photometric_ops_are_pillows():
    images = _grey(6)
    images[0] = images[0] // 4 + 60  # a narrow range: autocontrast stretches it
    images[1] = 7  # flat: autocontrast and equalize leave it
    x = images.unsqueeze(1).float()
    pil = _pil(images)
    assert np.array_equal(_back(da._autocontrast(x)), np.stack([np.array(ImageOps.autocontrast(p)) for p in pil]))
    assert np.array_equal(_back(da._equalize(x)), np.stack([np.array(ImageOps.equalize(p)) for p in pil]))
    for factor in (0.1, 0.6, 1.7):
        f = torch.full((6, 1, 1, 1), factor)
        mean = (x.mean((1, 2, 3), keepdim=True) + 0.5).floor().expand_as(x)
        cases = {
            ImageEnhance.Contrast: da._blend(mean, x, f),
            ImageEnhance.Brightness: da._blend(torch.zeros_like(x), x, f),
            ImageEnhance.Sharpness: da._blend(da._smooth(x), x, f),
        }
        for enhancer, ours in cases.items():
            expected = np.stack([np.array(enhancer(p).enhance(factor)) for p in pil]).astype(int)
            assert np.abs(_back(ours).astype(int) - expected).max() <= 1, (enhancer.__name__, factor)


def test_integer_translation_is_pils_affine_with_its_fill():
    images = _grey(3)
    x = images.unsqueeze(1).float()
    theta = torch.tensor([[1.0, 0, 5], [0, 1, -3]]).expand(3, 2, 3)
    ours = _back(da._affine(x, theta, torch.tensor([73.0]), "bilinear"))
    expected = np.stack(
        [
            np.array(p.transform((28, 28), Image.AFFINE, (1, 0, 5, 0, 1, -3), Image.BILINEAR, fillcolor=73))
            for p in _pil(images)
        ]
    )
    assert np.array_equal(ours, expected)


@pytest.mark.parametrize("name", ["bilinear", "bicubic"])
def test_crop_resize_flip_is_pils_within_a_grey_level(name):
    images = _grey(4)
    aug = da.DeviceTrainAugment(
        {**FMNIST_CFG, "interpolation": name}, scale=(0.08, 1), hflip=0.5, auto_augment=None, re_prob=0
    )
    top, left, h, w = (torch.tensor(v) for v in ([0, 3, 10, 5], [0, 7, 2, 11], [28, 12, 9, 20], [28, 20, 7, 14]))
    flip = torch.tensor([False, True, False, True])
    ours = _back(aug._crop(images.unsqueeze(1), top, left, h, w, flip))
    resample = Image.BILINEAR if name == "bilinear" else Image.BICUBIC
    for i, p in enumerate(_pil(images)):
        box = (int(left[i]), int(top[i]), int(left[i] + w[i]), int(top[i] + h[i]))
        out = p.crop(box).resize((28, 28), resample)  # torchvision: crop, then resize
        if flip[i]:
            out = out.transpose(Image.FLIP_LEFT_RIGHT)
        assert np.abs(ours[i].astype(int) - np.array(out).astype(int)).max() <= 1


def test_device_augmentation_is_per_sample_and_has_the_pil_pipelines_statistics():
    images = resolve_data("fmnist-sample").tensors("train", 400)[0]
    kw = {"scale": (0.08, 1), "hflip": 0.5, "auto_augment": "rand-m9-mstd0.5-inc1"}
    aug = da.DeviceTrainAugment(FMNIST_CFG, re_prob=0, **kw)
    seeds = torch.arange(400, dtype=torch.int64) * 7919
    batch = aug(images, seeds)
    alone = aug(images[5:6], seeds[5:6])
    assert torch.equal(batch[5:6], alone)  # a sample's draws do not depend on its batch
    assert not torch.equal(aug(images, seeds + 1), batch)
    from clmae.data.transforms.pil import train_transform

    tf = train_transform(FMNIST_CFG, re_prob=0, scale=kw["scale"], hflip=0.5, auto_augment=kw["auto_augment"])
    random_seed(0)
    pil = torch.stack([tf(p) for p in _pil(images)])
    assert batch.shape == pil.shape
    assert batch.mean().item() == pytest.approx(pil.mean().item(), abs=0.05)
    assert batch.std().item() == pytest.approx(pil.std().item(), abs=0.05)


def test_unsupported_recipes_keep_the_pil_path():
    with pytest.raises(ValueError, match="RandAugment"):
        da.DeviceTrainAugment(FMNIST_CFG, scale=(0.08, 1), hflip=0.5, auto_augment="augmix-m5", re_prob=0)
    with pytest.raises(ValueError, match="resamples"):
        da.DeviceTrainAugment(
            {**FMNIST_CFG, "interpolation": "lanczos"}, scale=(0.08, 1), hflip=0.5, auto_augment=None, re_prob=0
        )


def test_finetune_on_fashion_mnist_trains_from_tensors_and_scores_like_the_eval_transform(monkeypatch, one_thread):
    import clmae.eval.run as run

    seen = {}
    real = run.finetune

    def spy(model, train_ds, val_ds, *a, **k):
        seen.update(train=train_ds, val=val_ds)
        return real(model, train_ds, val_ds, *a, **k)

    monkeypatch.setattr(run, "finetune", spy)
    opts = {"epochs": 1, "warmup_epochs": 0, "batch_size": 32, "train_limit": 64, "val_limit": 40, "device": "cpu"}
    opts.update({f"model_kwargs.{k}": v for k, v in TINY_ENCODER.items()})
    a = run_eval("finetune", "vit_tiny_patch4_28", "fmnist-sample", opts)
    assert isinstance(seen["train"], TensorSplit) and isinstance(seen["val"], TensorSplit)
    assert a.data["train_size"] == 64 and a.data["val_size"] == 40
    b = run_eval("finetune", "vit_tiny_patch4_28", "fmnist-sample", opts)
    assert a.metrics == b.metrics  # same seed, same run
    # the validation images are the evaluation transform's, image for image
    data = resolve_data("fmnist-sample")
    x, y = seen["val"].batch(torch.arange(40))
    old = data.dataset("val", eval_transform_for(FMNIST_CFG), "L", 40)
    assert torch.equal(x, torch.stack([old[i][0] for i in range(40)]))
    assert y.tolist() == [old[i][1] for i in range(40)]
    # a recipe the device path does not do goes through PIL and a DataLoader
    run_eval("finetune", "vit_tiny_patch4_28", "fmnist-sample", {**opts, "auto_augment": "augmix-m5"})
    assert not isinstance(seen["train"], TensorSplit)
