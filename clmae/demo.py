"""The bundled demo: a few real CL-MAE training iterations on the Fashion-MNIST sample, and a picture of the masks.

Runs on a CPU in about a minute, with no network: ``clmae demo --out demo``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch

from .curriculum import curriculum_factor, curriculum_phase
from .data import SAMPLE_ROOT, load_fashion_mnist, to_float
from .data.fashion_mnist import MEAN, STD
from .models import create_pretraining_model
from .train import build_optimizers, train_step
from .train.visualize import mask_picture


def run_demo(
    out: str | os.PathLike = "demo",
    arch: str = "vit_tiny_patch4_28",
    epochs: int = 4,
    batch_size: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
    num_images: int = 1000,
) -> dict:
    """Train CL-MAE for ``epochs`` passes over the bundled sample and save masks, reconstructions and losses.

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
    """
    out = Path(out)
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
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    print(
        f"{len(history)} iterations in {seconds:.0f} s. Wrote {out / 'masks.png'} (rows: image, hidden patches, "
        f"visible input, reconstruction, keep-scores) and {out / 'metrics.json'}"
    )
    return metrics
