"""The bundled demos, both on a CPU with no network.

``clmae demo``: the zoo's main job. Load the bundled CL-MAE encoder (``vit_t_fmnist``), extract features of the
bundled Fashion-MNIST images, report kNN accuracy beside the MAE encoder and raw pixels, and draw what the learned
masking module hides (:func:`run_demo`).

``clmae demo --train``: a few real CL-MAE training iterations on the same images, and a picture of the masks
(:func:`run_train_demo`).
"""

from __future__ import annotations

import json
import math
import os
import time

import torch
from torch.utils.data import TensorDataset

from ._atomic import write_text
from .curriculum import curriculum_factor, curriculum_phase
from .data import CLASSES, DEBIAN_ROOT, SAMPLE_ROOT, load_fashion_mnist, to_float
from .data.fashion_mnist import MEAN, STD
from .data.spec import check_path
from .eval.features import extract_features
from .eval.knn import knn_metrics
from .models import create_pretraining_model
from .train import build_optimizers, train_step
from .train.visualize import save_png
from .viz import mask_picture


def knn_accuracy(
    encoder: torch.nn.Module | None,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    batch_size: int = 250,
) -> dict[str, float]:
    """kNN top-1 of an encoder (``None``: raw pixels) on normalised ``(images, labels)`` pairs: CL-MAE's protocol
    (k=5, Euclidean, majority vote on the mean patch token) and the weighted cosine vote (k=20, T=0.07)."""
    ftrain, ytrain = extract_features(encoder, TensorDataset(*train), batch_size, features=("avg",))
    ftest, ytest = extract_features(encoder, TensorDataset(*test), batch_size, features=("avg",))
    metrics = knn_metrics(ftrain["avg"], ytrain, ftest["avg"], ytest, len(CLASSES))
    return {"reference": metrics["reference"]["top1"], "weighted": metrics["weighted"]["top1"]}


def run_demo(
    out: str | os.PathLike = "demo",
    weights: str = "vit_t_fmnist",
    baseline: str | None = "mae_vit_t_fmnist",
    data_root: str | os.PathLike | None = SAMPLE_ROOT,
    num_shown: int = 10,
) -> dict:
    """Evaluate the bundled CL-MAE encoder with kNN and draw its learned masks; no network, no GPU.

    Args:
        out: output folder; gets ``masks.png`` and ``metrics.json``.
        weights: the CL-MAE weight (registry name or alias, or a weights folder with ``pretraining.safetensors``).
        baseline: a second weight to compare with (the MAE trained alongside), or ``None``.
        data_root: Fashion-MNIST IDX folder: the bundled 1,000 + 1,000 images (default), or ``None`` for Debian's
            full data set (60,000 + 10,000 images through two encoders: tens of minutes on two CPU cores).
        num_shown: test images in the picture.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from .hub import load_pretrained, load_pretraining_model

    out = check_path(out, "--out")
    start = time.perf_counter()
    model = load_pretraining_model(weights)
    if model.masker is None:
        raise ValueError(f"{weights} has no masking module (an MAE weight); give a CL-MAE weight, e.g. vit_t_fmnist")
    train_images, train_labels = load_fashion_mnist("train", root=data_root)
    test_images, test_labels = load_fashion_mnist("test", root=data_root)
    out.mkdir(parents=True, exist_ok=True)
    train = (to_float(train_images), train_labels.long())
    test = (to_float(test_images), test_labels.long())
    print(f"Fashion-MNIST: kNN of {len(test[0])} test images against {len(train[0])} training images")

    results = {}
    candidates = {weights: weights, **({baseline: baseline} if baseline else {}), "raw pixels": None}
    for label, name in candidates.items():
        encoder = load_pretrained(name) if name is not None else None
        acc = knn_accuracy(encoder, train, test)
        results[label] = acc
        ref, weighted = 100 * acc["reference"], 100 * acc["weighted"]
        print(f"  {label:<18} kNN top-1: {ref:.2f}% (k=5, CL-MAE's protocol), {weighted:.2f}% (k=20 weighted)")

    title = f"{weights}: {round(100 * model.mask_ratio)}% of the patches hidden, chosen by its learned masking module"
    save_png(mask_picture(model, test[0][:num_shown], (MEAN,), (STD,), title), out / "masks.png")
    seconds = time.perf_counter() - start
    metrics = {
        "weights": weights,
        "baseline": baseline,
        "data": "Debian's dataset-fashion-mnist" if data_root in (None, DEBIAN_ROOT) else str(data_root),
        "train_images": len(train[0]),
        "test_images": len(test[0]),
        "knn_top1": results,
        "seconds": round(seconds, 1),
        "device": "cpu",
    }
    write_text(out / "metrics.json", json.dumps(metrics, indent=1), what="metrics file")
    print(
        f"Done in {seconds:.0f} s. Wrote {out / 'masks.png'} (labelled rows: the image, the patches the learned "
        f"masking module hides, the visible input, the reconstruction, the keep-scores) and {out / 'metrics.json'}"
    )
    return metrics


def run_train_demo(
    out: str | os.PathLike = "demo",
    arch: str = "vit_tiny_patch4_28",
    epochs: int = 4,
    batch_size: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
    num_images: int = 1000,
) -> dict:
    """Train CL-MAE from scratch for ``epochs`` passes over the bundled sample; save masks, reconstructions, losses.

    The curriculum factor follows the method's schedule over these epochs (for 4 epochs: +1, +0.5, -0.5, -1).

    Args:
        out: output folder; gets ``masks.png`` and ``metrics.json``.
        arch: a 28x28 one-channel architecture.
        epochs: passes over the images.
        batch_size: images per iteration.
        lr: AdamW learning rate (constant).
        seed: seed of the model initialisation and data order.
        num_images: how many sample images to train on (at most 1,000).

    Returns:
        The metrics written to ``metrics.json``.

    Raises:
        ValueError: an argument makes no sense (checked as ``clmae train`` checks its own, before anything runs).
    """
    out = check_path(out, "--out")
    for name, value in (("--epochs", epochs), ("--batch-size", batch_size), ("num_images", num_images)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if batch_size > min(num_images, 1000):
        raise ValueError(f"--batch-size {batch_size} is larger than the {min(num_images, 1000)} training images")
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"--lr must be a finite number > 0, got {lr!r}")
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    images, _ = load_fashion_mnist("train", root=SAMPLE_ROOT)
    train = to_float(images[:num_images])
    test_images, _ = load_fashion_mnist("test", root=SAMPLE_ROOT)
    shown = to_float(test_images[:10])

    model = create_pretraining_model(arch, method="clmae")
    mae_opt, masker_opt = build_optimizers(model, lr)
    history = []
    start = time.perf_counter()
    print(f"CL-MAE {arch}: {epochs} epochs over {len(train)} Fashion-MNIST images, batch {batch_size}")
    for epoch in range(epochs):
        lam = curriculum_factor(epoch, epochs)
        order = torch.randperm(len(train))
        model.train()
        for i in range(0, len(train) - batch_size + 1, batch_size):
            stats = train_step(model, train[order[i : i + batch_size]], lam, mae_opt, masker_opt)
            history.append({"epoch": epoch, "lambda": lam, **{k: round(v.item(), 5) for k, v in stats.items()}})
        last = history[-1]
        print(
            f"epoch {epoch}  lambda {lam:+.2f} ({curriculum_phase(lam)})  MAE loss {last['mae_loss']:.4f}  "
            f"masker loss {last['masker_loss']:.4f}  mean keep-score {last['score_mean']:.3f}"
        )
    seconds = time.perf_counter() - start

    mask_picture(model, shown, (MEAN,), (STD,)).save(out / "masks.png")
    metrics = {
        "arch": arch,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "images": len(train),
        "seconds": round(seconds, 1),
        "device": "cpu",
        "history": history,
    }
    write_text(out / "metrics.json", json.dumps(metrics, indent=1), what="metrics file")
    print(
        f"{len(history)} iterations in {seconds:.0f} s. Wrote {out / 'masks.png'} (rows: image, hidden patches, "
        f"visible input, reconstruction, keep-scores) and {out / 'metrics.json'}"
    )
    return metrics
