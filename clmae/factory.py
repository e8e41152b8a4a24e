"""``create_model``: timm's entry point over clmae's architectures (:mod:`clmae.models`) and weights (:mod:`clmae.hub`).

The one place that knows both names of architectures and names of weights, as timm's ``_factory.create_model``.
"""

from __future__ import annotations

import os
from typing import Any

from timm.models.vision_transformer import VisionTransformer

from ._config_json import read_config
from ._files import CONFIG_NAME
from .hub import build_from_config, load_pretrained, parse_spec
from .hub.registry import find
from .models import create_encoder, list_models


def create_model(name: str | os.PathLike, pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """Create an encoder: a plain timm ``VisionTransformer`` with no classifier head (``num_classes=0``), in train mode.

    As ``timm.create_model``: the same model with or without weights, and a weight name without ``pretrained=True``
    gives that weight's architecture and preprocessing with random weights. Fine-tune it as any timm model, e.g.
    ``model.reset_classifier(10)``. For a ready feature extractor (eval mode) use :func:`clmae.load_pretrained`.

    Args:
        name: an architecture (:func:`clmae.list_models`), a registry weight (``arch.tag`` or an alias,
            :func:`clmae.list_pretrained`), ``hf-hub:org/repo[@rev]``, ``local-dir:/path`` or a weights folder.
        pretrained: load the weights (pinned and sha256-verified where the registry pins them).
        **kwargs: timm ``VisionTransformer`` arguments that override the architecture's (``num_classes``,
            ``drop_path_rate``, ``img_size``, ``global_pool``, ...).

    Returns:
        The timm ``VisionTransformer``.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(
            f"create_model: name must be an architecture or weight name (a string) or a weights folder path, got "
            f"{name!r} ({type(name).__name__}); see clmae.list_models() and clmae.list_pretrained()"
        )
    name = os.fspath(name)
    if pretrained:
        return load_pretrained(name, **kwargs).train()
    if name in list_models():
        return create_encoder(name, **kwargs)
    entry = find(name)
    if entry is not None:  # random weights, the weight's architecture and preprocessing (no file is read)
        model = create_encoder(entry.arch, **kwargs)
        model.pretrained_cfg.update(tag=entry.tag, method=entry.method, source=entry.name)
        return model
    src = parse_spec(name, architectures=True).source  # the rules of load_pretrained; unknown: names both kinds
    return build_from_config(read_config(src.file(CONFIG_NAME, None, None)), **kwargs)
