"""The model card (``README.md``) of a weights folder: Hub YAML front matter, then usage and provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from .._atomic import write_text
from .._files import CARD_NAME
from ..models import METHOD_TITLES


def write_model_card(folder: Path, cfg: dict[str, Any], metadata: dict[str, Any], checksums: dict[str, str]) -> Path:
    """Write ``folder/README.md``.

    Args:
        folder: the weights folder.
        cfg: its ``config.json`` content.
        metadata: see :func:`clmae.save_pretrained` (``license``, ``datasets``, ``metrics``, ``tags``,
            ``description``, ``repo_id``, ``load_name``: the name ``clmae.load_pretrained`` knows it by).
        checksums: ``{file name: sha256}`` of the weight files.

    Returns:
        The card's path.
    """
    info = cfg["clmae"]
    method = METHOD_TITLES.get(info.get("method") or "", "masked-autoencoder")
    metrics = dict(metadata.get("metrics") or {})
    tags = ["image-feature-extraction", "timm", "clmae", "masked-autoencoder", "self-supervised-learning"]
    tags += [t for t in metadata.get("tags") or [] if t not in tags]
    data = ModelCardData(
        license=cfg["pretrained_cfg"]["license"],
        library_name="timm",
        pipeline_tag="image-feature-extraction",
        tags=tags,
        datasets=list(metadata.get("datasets") or []) or None,
        metrics=sorted(metrics) or None,
    )
    repo = metadata.get("repo_id") or "<org>/<repo>"  # clmae push fills in the placeholder
    source = f"hf-hub:{repo}"
    clmae_name = metadata.get("load_name") or source
    c, h, w = cfg["pretrained_cfg"]["input_size"]
    lines = [
        f"# {info.get('arch') or cfg['architecture']}: {method} encoder",
        "",
        metadata.get("description")
        or f"A {method} ViT encoder pretrained with clmae (Curriculum-Learned Masked Autoencoders, "
        "Madan et al., WACV 2024). It is a plain timm `VisionTransformer` without a classifier head.",
        "",
        "## Usage",
        "",
        "```python",
        "import timm",
        "",
        f'model = timm.create_model("{source}", pretrained=True).eval()  # or clmae.load_pretrained("{clmae_name}")',
        "cfg = timm.data.resolve_data_config({}, model=model)",
        "transform = timm.data.create_transform(**cfg)",
        # timm's transform keeps the image's channels: make it the model's mode first (greyscale "L" or "RGB")
        f'features = model(transform(img.convert("{"L" if c == 1 else "RGB"}")).unsqueeze(0))'
        f"  # [1, {cfg.get('num_features', 'D')}], input {c}x{h}x{w}",
        "```",
        "",
        "## Files",
        "",
        "| file | sha256 |",
        "|---|---|",
        *[f"| `{name}` | `{digest}` |" for name, digest in checksums.items()],
    ]
    if metrics:
        lines += ["", "## Results", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(metrics.items())]
    lines += [
        "",
        "## Preprocessing",
        "",
        f"Input {c}x{h}x{w}, mean {cfg['pretrained_cfg']['mean']}, std {cfg['pretrained_cfg']['std']}, "
        f"crop_pct {cfg['pretrained_cfg']['crop_pct']}, {cfg['pretrained_cfg']['interpolation']} interpolation "
        "(all in `config.json`, read by `timm.data.resolve_data_config`).",
        "",
    ]
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    return write_text(folder / CARD_NAME, str(card), what="model card")
