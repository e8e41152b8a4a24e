"""Pictures of what a (CL-)MAE hides and reconstructs, drawn with Pillow (no plotting library needed).

:func:`mask_picture` runs a model on a batch and draws it; :func:`mask_grid` draws given tensors. Both are used by
``clmae demo``, ``clmae train`` (``OUT/vis``) and ``clmae visualize``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image, ImageDraw

from .data.transforms.numbers import denormalize
from .models import CLMAE
from .models.patches import patchify, unpatchify

ROW_LABELS = ("image", "hidden (orange)", "visible input", "reconstruction", "keep-scores")
ROW_LABEL_WIDTH = 100  # pixels left of the tiles for the row labels
TITLE_HEIGHT = 22  # pixels above the tiles for the title
SCALE_WIDTH = 64  # pixels right of the tiles for the keep-score colour scale

HIDDEN_RGB = (1.0, 0.45, 0.0)
"""Colour of hidden patches: an orange, apart from black, from every grey of a greyscale image and from the
keep-score colours."""
HIDDEN_TINT = 0.6  # hidden patches in the "hidden" row: 60 % orange over 40 % of the image, so the content shows

# Viridis (matplotlib's perceptually uniform colour map, CC0) at 0, 1/4, 1/2, 3/4 and 1, linearly interpolated:
# dark purple = hide, yellow = keep, readable in greyscale print too.
KEEP_COLORS = torch.tensor(
    [[0.267, 0.005, 0.329], [0.231, 0.322, 0.545], [0.129, 0.569, 0.549], [0.369, 0.788, 0.384], [0.993, 0.906, 0.144]]
)


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def keep_colors(scores: torch.Tensor) -> torch.Tensor:
    """Keep-scores in [0, 1], any shape ``[...]``, as RGB ``[..., 3]`` on :data:`KEEP_COLORS`' scale."""
    pos = scores.clamp(0, 1) * (len(KEEP_COLORS) - 1)
    lo = pos.floor().long().clamp(max=len(KEEP_COLORS) - 2)
    frac = (pos - lo).unsqueeze(-1)
    return KEEP_COLORS[lo] * (1 - frac) + KEEP_COLORS[lo + 1] * frac


def _draw_scale(draw: ImageDraw.ImageDraw, x: int, y: int, height: int) -> None:
    """A vertical colour bar of the keep-score scale, 1 (keep) at the top, 0 (hide) at the bottom."""
    ramp = _to_uint8(keep_colors(torch.linspace(1, 0, max(height, 2))))
    for i, (r, g, b) in enumerate(ramp.tolist()):
        draw.line([(x, y + i), (x + 10, y + i)], fill=(r, g, b))
    draw.rectangle([x, y, x + 10, y + height - 1], outline=(0, 0, 0))
    draw.text((x + 14, y - 2), "1 keep", fill=(0, 0, 0))
    draw.text((x + 14, y + height // 2 - 6), "0.5", fill=(0, 0, 0))
    draw.text((x + 14, y + height - 12), "0 hide", fill=(0, 0, 0))


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
    title: str | None = None,
) -> Image.Image:
    """One column per image; rows: image, what is hidden (tinted orange), the visible input (hidden patches solid
    orange), reconstruction, keep-scores (colour scale :data:`KEEP_COLORS`, drawn beside them when ``labels``).

    Args:
        images: normalised images ``[N, C, H, W]``.
        mask: ``[N, L]``, 1 = hidden.
        pred: decoder output ``[N, L, p*p*C]`` (pixels in normalised units; per-patch normalised if
            ``norm_pix_loss``, in which case each patch is mapped back with the true patch's mean and std).
        patch_size: p.
        mean: per-channel mean used to normalise ``images``.
        std: per-channel std used to normalise ``images``.
        scores: optional keep-scores ``[N, L]`` in [0, 1] (1 = keep), drawn on the viridis scale.
        norm_pix_loss: whether ``pred`` is per-patch normalised.
        scale: nearest-neighbour magnification.
        pad: white border between tiles, in pixels after magnification.
        labels: name each row at its left (:data:`ROW_LABELS`) and draw the keep-score scale at the right.
        title: a line above the picture.

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
    hidden_map = unpatchify(mask.unsqueeze(-1).expand(-1, -1, patch_size * patch_size), patch_size, 1)
    rgb = (lambda x: x.expand(-1, 3, -1, -1)) if c == 1 else (lambda x: x)  # colours need three channels
    pixels = rgb(denormalize(images, mean, std).clamp(0, 1))
    orange = torch.tensor(HIDDEN_RGB).view(1, 3, 1, 1)
    rows = [
        pixels,
        pixels * (1 - HIDDEN_TINT * hidden_map) + HIDDEN_TINT * hidden_map * orange,
        pixels * (1 - hidden_map) + hidden_map * orange,
        rgb(denormalize(recon, mean, std)),
    ]
    if scores is not None:
        sc = scores.detach().float().cpu().unsqueeze(-1).expand(-1, -1, patch_size * patch_size)
        rows.append(keep_colors(unpatchify(sc, patch_size, 1)[:, 0]).permute(0, 3, 1, 2))
    tiles = [_to_uint8(r) for r in rows]
    tile_h, tile_w = h * scale + pad, w * scale + pad
    left = ROW_LABEL_WIDTH if labels else 0
    top = TITLE_HEIGHT if title else 0
    right = SCALE_WIDTH if labels and scores is not None else 0
    canvas = Image.new("RGB", (left + n * tile_w + pad + right, top + len(tiles) * tile_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((4, 5), title, fill=(0, 0, 0))
    for r, row in enumerate(tiles):
        if labels:
            draw.text((4, top + pad + r * tile_h + tile_h // 2 - 6), ROW_LABELS[r], fill=(0, 0, 0))
        for i in range(n):
            img = Image.fromarray(row[i].permute(1, 2, 0).numpy(), "RGB")
            canvas.paste(
                img.resize((w * scale, h * scale), Image.NEAREST), (left + pad + i * tile_w, top + pad + r * tile_h)
            )
    if right:
        _draw_scale(draw, left + n * tile_w + pad + 6, top + pad + (len(tiles) - 1) * tile_h, h * scale)
    return canvas


@torch.no_grad()
def mask_picture(
    model: CLMAE, images: torch.Tensor, mean: Sequence[float], std: Sequence[float], title: str | None = None
) -> Image.Image:
    """:func:`mask_grid` of ``model`` on ``images`` (normalised ``[N, C, H, W]`` on the model's device): the image,
    hidden patches, visible part, reconstruction and (CL-MAE) keep-scores, one column per image, rows labelled.

    ``title`` defaults to what the picture shows: the method, how many patches are hidden and who chose them."""
    if title is None:
        who = "the learned masking module" if model.masker is not None else "uniform random masking (MAE)"
        title = f"{round(100 * model.mask_ratio)}% of the patches hidden, chosen by {who}"
    was_training = model.training
    model.eval()
    out = model.forward_mae(images, torch.Generator(images.device).manual_seed(0))
    scores = model.masker(model.embed(images)) if model.masker is not None else None
    model.train(was_training)
    return mask_grid(
        images, out["mask"], out["pred"], model.patch_size, mean, std, scores, model.norm_pix_loss, title=title
    )
