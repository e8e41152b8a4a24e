"""Pictures of what a (CL-)MAE hides and reconstructs, drawn with Pillow (no plotting library needed).

:func:`mask_picture` runs a model on a batch and draws it; :func:`mask_grid` draws given tensors. Both are used by
``clmae demo``, ``clmae train`` (``OUT/vis``) and ``clmae visualize``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw

from .data.preprocess import denormalize
from .models import CLMAE
from .models.patches import patchify, unpatchify

ROW_LABELS = ("image", "hidden", "visible", "reconstruction", "keep-scores")
ROW_LABEL_WIDTH = 100  # pixels left of the tiles for the row labels


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def mask_grid(
    images: torch.Tensor,
    mask: torch.Tensor,
    pred: torch.Tensor,
    patch_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    scores: torch.Tensor | None = None,
    norm_pix_loss: bool = False,
    scale: int = 4,
    pad: int = 2,
    labels: bool = True,
) -> Image.Image:
    """One column per image; rows: image, what is hidden (dark), visible part, reconstruction, keep-scores.

    Args:
        images: normalised images ``[N, C, H, W]``.
        mask: ``[N, L]``, 1 = hidden.
        pred: decoder output ``[N, L, p*p*C]`` (pixels in normalised units; per-patch normalised if
            ``norm_pix_loss``, in which case each patch is mapped back with the true patch's mean and std).
        patch_size: p.
        mean: per-channel mean used to normalise ``images``.
        std: per-channel std used to normalise ``images``.
        scores: optional keep-scores ``[N, L]`` drawn as a grey map (white = keep).
        norm_pix_loss: whether ``pred`` is per-patch normalised.
        scale: nearest-neighbour magnification.
        pad: white border between tiles, in pixels after magnification.
        labels: name each row at its left (:data:`ROW_LABELS`).

    Returns:
        An RGB ``PIL.Image``.
    """
    images, mask, pred = images.detach().float().cpu(), mask.detach().float().cpu(), pred.detach().float().cpu()
    n, c, h, w = images.shape
    target = patchify(images, patch_size)
    if norm_pix_loss:  # undo the per-patch normalisation with the true patch statistics
        mu, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        pred = pred * (var + 1e-6) ** 0.5 + mu
    full = mask.unsqueeze(-1).expand_as(target)
    recon = unpatchify(target * (1 - full) + pred * full, patch_size, c)
    hidden_map = unpatchify(full, patch_size, c)
    pixels = denormalize(images, mean, std)
    rows = [
        pixels,
        pixels * (1 - 0.7 * hidden_map),
        pixels * (1 - hidden_map) + 0.5 * hidden_map,
        denormalize(recon, mean, std),
    ]
    if scores is not None:
        sc = scores.detach().float().cpu().unsqueeze(-1).expand(-1, -1, patch_size * patch_size * c)
        rows.append(unpatchify(sc, patch_size, c))
    tiles = [_to_uint8(r) for r in rows]
    tile_h, tile_w = h * scale + pad, w * scale + pad
    left = ROW_LABEL_WIDTH if labels else 0
    canvas = Image.new("RGB", (left + n * tile_w + pad, len(tiles) * tile_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for r, row in enumerate(tiles):
        if labels:
            draw.text((4, pad + r * tile_h + tile_h // 2 - 6), ROW_LABELS[r], fill=(0, 0, 0))
        for i in range(n):
            arr = row[i].permute(1, 2, 0).numpy()
            img = Image.fromarray(arr[..., 0] if c == 1 else arr)  # uint8: "L" or "RGB"
            img = img.resize((w * scale, h * scale), Image.NEAREST).convert("RGB")
            canvas.paste(img, (left + pad + i * tile_w, pad + r * tile_h))
    return canvas


@torch.no_grad()
def mask_picture(model: CLMAE, images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> Image.Image:
    """:func:`mask_grid` of ``model`` on ``images`` (normalised ``[N, C, H, W]`` on the model's device): the image,
    hidden patches, visible part, reconstruction and (CL-MAE) keep-scores, one column per image, rows labelled."""
    was_training = model.training
    model.eval()
    out = model.forward_mae(images, torch.Generator(images.device).manual_seed(0))
    scores = model.masker(model.embed(images)) if model.masker is not None else None
    model.train(was_training)
    return mask_grid(images, out["mask"], out["pred"], model.patch_size, mean, std, scores, model.norm_pix_loss)
