"""Pictures of a run: a plot of lambda_cl and the losses over training (Pillow, no plotting library needed), and
``clmae visualize`` (a checkpoint's masks through :func:`clmae.viz.mask_picture`, and its history)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw, PngImagePlugin

from .._atomic import check_target, write_file
from ..data.spec import check_path
from ..viz import mask_picture
from .batches import model_data
from .checkpoint import checkpoint_model, load_checkpoint

# (key in the epoch records, label, colour)
_LOSSES = [
    ("mae_loss", "MAE loss", (31, 119, 180)),
    ("rec", "masker L_rec", (255, 127, 14)),
    ("masker_loss", "masker loss", (44, 160, 44)),
]
_LAMBDA = [("lam", "lambda_cl", (214, 39, 40))]


def _panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    xs: list[float],
    series: list,
    title: str,
    records: list[dict[str, Any]],
) -> None:
    left, top, right, bottom = box
    lines = [
        (label, color, [(x, r[key]) for x, r in zip(xs, records) if r.get(key) is not None])
        for key, label, color in series
    ]
    values = [y for _, _, pts in lines for _, y in pts]
    draw.rectangle(box, outline=(0, 0, 0))
    draw.text((left, top - 14), title, fill=(0, 0, 0))
    if not values:
        return
    lo, hi = min(values), max(values)
    if hi - lo < 1e-12:
        lo, hi = lo - 1, hi + 1
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            left + 5 + (right - left - 10) * (x - x0) / (x1 - x0),
            bottom - 5 - (bottom - top - 10) * (y - lo) / (hi - lo),
        )

    draw.text((right + 4, top), f"{hi:.4g}", fill=(0, 0, 0))
    draw.text((right + 4, bottom - 12), f"{lo:.4g}", fill=(0, 0, 0))
    for i, (label, color, pts) in enumerate(lines):
        if len(pts) > 1:
            draw.line([px(x, y) for x, y in pts], fill=color, width=2)
        for x, y in pts:
            cx, cy = px(x, y)
            draw.ellipse((cx - 2, cy - 2, cx + 2, cy + 2), fill=color)
        draw.text((left + 190 + 110 * i, top - 14), label, fill=color)  # legend beside the title


SOFTWARE = "clmae visualize"  # the PNG text chunk that marks a picture as drawn by clmae (replaced without asking)


def _drawn_by_clmae(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.text.get("Software") == SOFTWARE
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False


def save_png(image: Image.Image, path: str | os.PathLike) -> Path:
    """Write ``image`` as a PNG marked as drawn by clmae, atomically (:func:`clmae._atomic.write_file`)."""
    info = PngImagePlugin.PngInfo()
    info.add_text("Software", SOFTWARE)
    return write_file(path, lambda f: image.save(f, format="PNG", pnginfo=info), what="picture")


def plot_history(records: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """Draw lambda_cl and the losses per epoch (``records``: the trainer's epoch records) to a PNG."""
    xs = [r["epoch"] + 1 for r in records]
    image = Image.new("RGB", (640, 420), "white")
    draw = ImageDraw.Draw(image)
    _panel(draw, (40, 30, 560, 250), xs, _LOSSES, "losses (epoch means)", records)
    _panel(draw, (40, 290, 560, 390), xs, _LAMBDA, "curriculum factor lambda_cl", records)
    draw.text((270, 400), "epoch", fill=(0, 0, 0))
    return save_png(image, path)


def visualize_checkpoint(
    checkpoint: str | os.PathLike,
    out: str | os.PathLike | None = None,
    data: str | None = None,
    num_images: int = 8,
    *,
    overwrite: bool = False,
) -> list[Path]:
    """Draw a checkpoint's masks and reconstructions, and its loss/lambda_cl history.

    Args:
        checkpoint: a ``checkpoint-*.pt`` written by ``clmae train``.
        out: output folder (default: the checkpoint's folder).
        data: data spec for the images (default: the run's).
        num_images: images in the grid.
        overwrite: replace files of the same names that clmae did not draw (without it they are refused; earlier
            pictures of clmae are replaced).

    Returns:
        The PNG files written: ``masks-<checkpoint>.png`` and ``history-<checkpoint>.png``.
    """
    checkpoint = Path(checkpoint)
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"--num-images must be a whole number >= 1, got {num_images!r}")
    if out is not None:
        check_path(out, "--out")
    folder = Path(out) if out is not None else checkpoint.parent
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--out {folder} is a file; give a folder for the pictures")
    grid, history = folder / f"masks-{checkpoint.stem}.png", folder / f"history-{checkpoint.stem}.png"
    for path in (grid, history):
        check_target(path, _drawn_by_clmae, "a picture drawn by clmae visualize", overwrite=overwrite, folder=False)
    state = load_checkpoint(checkpoint)
    cfg = state["config"]
    model = checkpoint_model(state)
    pdata = model_data(data or cfg["data"], model, cfg["seed"])
    n = min(num_images, len(pdata.preview))
    images = torch.stack([pdata.preview[i] for i in range(n)])
    written = [save_png(mask_picture(model, images, pdata.mean, pdata.std), grid)]
    if state.get("metrics"):
        written.append(plot_history(state["metrics"], history))
    return written
