"""Every protocol on data built to be separable (near 100%) and on shuffled labels (chance), with fixed seeds."""

import numpy as np
import pytest
import torch
from PIL import Image

from clmae.data.transforms.pil import train_transform
from clmae.eval import (
    LinearProbeConfig,
    knn_majority_vote,
    knn_weighted_scores,
    linear_probe_cached,
    resolve_model,
    run_eval,
)
from clmae.eval.finetune import build_classifier
from clmae.eval.knn import topk_accuracy

pytestmark = pytest.mark.usefixtures("one_thread")


TINY = {"model.embed_dim": 32, "model.depth": 2, "model.num_heads": 2}
C = 10  # classes of the feature-level tests: chance is 0.1


def _features(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten well-separated Gaussian clusters in 32-D (centres ~ N(0, 25 I), unit noise), n per class."""
    centres = torch.randn(C, 32, generator=torch.Generator().manual_seed(0)) * 5
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(C).repeat_interleave(n)
    return centres[y] + torch.randn(len(y), 32, generator=g), y


def _shuffled(y: torch.Tensor, seed: int) -> torch.Tensor:
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]


# Shuffled labels: the labels of both splits are permuted, so each test label is independent of the image and of
# everything learned; any classifier then scores like a draw of 2,000 balanced labels (mean 0.1, standard deviation
# 0.0067), and [0.05, 0.15] is +-7 sigma. (Shuffling only the training labels would not do: every well-separated
# cluster would map to one class, and the accuracy would hinge on ten coin flips.)
CHANCE = (0.05, 0.15)


def test_knn_separable_and_shuffled():
    x, y = _features(200, seed=1)
    xt, yt = _features(200, seed=2)
    for labels, test_labels, lo, hi in ((y, yt, 0.99, 1.0), (_shuffled(y, 1), _shuffled(yt, 2), *CHANCE)):
        ref = topk_accuracy(knn_majority_vote(x, labels, xt, C, k=5), test_labels, (1,))["top1"]
        wtd = topk_accuracy(knn_weighted_scores(x, labels, xt, C), test_labels, (1,))["top1"]
        assert lo <= ref <= hi and lo <= wtd <= hi, (ref, wtd)


def test_linear_probe_separable_and_shuffled():
    x, y = _features(200, seed=1)
    xt, yt = _features(200, seed=2)
    cfg = LinearProbeConfig(epochs=10, warmup_epochs=1, batch_size=256, base_lr=20.0)
    assert linear_probe_cached(x, y, xt, yt, C, cfg)["top1"] >= 0.99
    shuffled = linear_probe_cached(x, _shuffled(y, 1), xt, _shuffled(yt, 2), C, cfg)["top1"]
    assert CHANCE[0] <= shuffled <= CHANCE[1], shuffled


def test_linear_probe_is_deterministic_for_a_seed():
    x, y = _features(30, seed=1)
    cfg = LinearProbeConfig(epochs=3, warmup_epochs=1, batch_size=64, seed=5)
    a, b = linear_probe_cached(x, y, x, y, C, cfg), linear_probe_cached(x, y, x, y, C, cfg)
    assert a == b
    other = linear_probe_cached(x, y, x, y, C, LinearProbeConfig(epochs=3, warmup_epochs=1, batch_size=64, seed=6))
    assert other["train_loss"] != a["train_loss"]


def _image_folder(root, per_class: dict[str, int], shuffle: bool = False, seed: int = 0) -> str:
    """Four classes of 28x28 grey images: a bright 14x14 square in quadrant c on a dark background, noise sd 20.

    The tests turn off the augmentations that would move a quadrant (crop_min=1, hflip=0), so the classes stay
    separable; with ``shuffle`` the images of both splits are put under randomly permuted class folders.
    """
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        quadrants = np.repeat(np.arange(4), n)
        folders = rng.permutation(quadrants) if shuffle else quadrants
        for i, (q, folder) in enumerate(zip(quadrants, folders, strict=True)):
            img = 40 + rng.normal(0, 20, (28, 28))
            img[14 * (q // 2) : 14 * (q // 2) + 14, 14 * (q % 2) : 14 * (q % 2) + 14] += 160
            img = np.clip(img, 0, 255).astype(np.uint8)
            path = root / split / f"c{folder}"
            path.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img, "L").save(path / f"{i}.png")
    return f"imagefolder:{root}"


FT = {
    "epochs": "12",
    "warmup_epochs": "1",
    "batch_size": "32",
    "base_lr": "0.02",
    "mixup": "0",
    "cutmix": "0",
    "auto_augment": "none",
    "reprob": "0",
    "smoothing": "0",
    "drop_path": "0",
    "crop_min": "1",
    "hflip": "0",
    "device": "cpu",
}


@pytest.mark.slow
@pytest.mark.integration
def test_image_protocols_on_separable_images(tmp_path):
    data = _image_folder(tmp_path / "sep", {"train": 32, "val": 25})
    opts = {**TINY, "device": "cpu", "cache_dir": str(tmp_path / "cache")}
    knn = run_eval("knn", "vit_tiny_patch4_28", data, opts)
    assert knn.metrics["reference"]["top1"] >= 0.95 and knn.metrics["weighted"]["top1"] >= 0.95
    raw = run_eval("knn", "raw-pixels", data, {"device": "cpu"})
    assert raw.metrics["top1"] == 1.0
    lin = {"epochs": "50", "warmup_epochs": "2", "batch_size": "32", "base_lr": "20", "crop_min": "1", "hflip": "0"}
    assert run_eval("linear", "vit_tiny_patch4_28", data, {**opts, **lin, "mode": "cached"}).metrics["top1"] >= 0.95
    mae = run_eval("linear", "vit_tiny_patch4_28", data, {**opts, **lin, "mode": "mae"})
    assert mae.metrics["top1"] >= 0.95
    ft = run_eval("finetune", "vit_tiny_patch4_28", data, {**TINY, **FT})
    assert ft.metrics["top1"] >= 0.95, ft.metrics


@pytest.mark.integration
def test_image_protocols_on_shuffled_labels_sit_at_chance(tmp_path):
    # 4 classes, 100 validation images each, labels of both splits permuted (see CHANCE): at chance (0.25) the
    # standard deviation is 0.022, and [0.10, 0.40] is +-7 sigma.
    data = _image_folder(tmp_path / "shuf", {"train": 32, "val": 100}, shuffle=True)
    opts = {**TINY, "device": "cpu", "cache": "false"}
    lin = {"epochs": "50", "warmup_epochs": "2", "batch_size": "32", "base_lr": "20", "mode": "cached"}
    accs = {
        "knn raw-pixels": run_eval("knn", "raw-pixels", data, {"device": "cpu"}).metrics,
        "knn random ViT": run_eval("knn", "vit_tiny_patch4_28", data, opts).metrics,
        "linear": run_eval("linear", "vit_tiny_patch4_28", data, {**opts, **lin}).metrics,
        "finetune": run_eval("finetune", "vit_tiny_patch4_28", data, {**TINY, **FT}).metrics,
    }
    top1 = {name: m["top1"] for name, m in accs.items()} | {
        f"{name} weighted": m["weighted"]["top1"] for name, m in accs.items() if "weighted" in m
    }
    assert all(0.10 <= a <= 0.40 for a in top1.values()), top1


def test_finetune_default_recipe_is_reproducible(tmp_path):
    # Default augmentation: RandAugment (Python's random), mixup/cutmix (NumPy), random erasing and drop-path (torch).
    data = _image_folder(tmp_path / "d", {"train": 4, "val": 2})
    opts = {**TINY, "epochs": "2", "warmup_epochs": "1", "batch_size": "8", "device": "cpu"}
    a, b = (
        run_eval("finetune", "vit_tiny_patch4_28", data, opts),
        run_eval("finetune", "vit_tiny_patch4_28", data, opts),
    )
    assert a.metrics == b.metrics
    assert a.hparams["mixup"] == 0.8 and a.hparams["auto_augment"] == "rand-m9-mstd0.5-inc1"
    c = run_eval("finetune", "vit_tiny_patch4_28", data, {**opts, "seed": "1"})
    assert c.metrics["train_loss"] != a.metrics["train_loss"]


def test_finetune_classifier_is_mae_s():
    model = resolve_model("vit_tiny_patch4_28", overrides={"embed_dim": 32, "depth": 2, "num_heads": 2})
    net = build_classifier(model, num_classes=7, drop_path=0.1)
    assert net.global_pool == "avg" and isinstance(net.norm, torch.nn.Identity)
    assert isinstance(net.fc_norm, torch.nn.LayerNorm) and net.head.out_features == 7
    assert net.head.weight.abs().max() < 1e-4  # trunc-normal, std 2e-5
    assert net.blocks[1].drop_path1.drop_prob > 0  # timm's linear drop-path schedule over depth
    state = net.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict.items() if not k.startswith("norm."))


def test_randaugment_posterize_at_full_magnitude_gives_black_not_an_error():
    # timm's increasing posterize keeps 0 bits at magnitude 10; Pillow 13 rejects 0, older Pillow returned black.
    cfg = {"input_size": (1, 28, 28), "mean": (0.5,), "std": (0.5,), "interpolation": "bilinear"}
    tf = train_transform(cfg, auto_augment="rand-m9-mstd0.5-inc1")
    ops = [op for t in tf.transforms for op in getattr(t, "ops", []) if op.name == "PosterizeIncreasing"]
    assert len(ops) == 1
    img = Image.fromarray(np.full((28, 28), 200, np.uint8), "L")
    assert np.array(ops[0].aug_fn(img, 0)).max() == 0
    assert np.array(ops[0].aug_fn(img, 1)).max() == 128  # 200 = 0b11001000, top bit kept
    assert np.array(ops[0].aug_fn(img, 8)).max() == 200
