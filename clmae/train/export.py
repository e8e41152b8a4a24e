"""The end of a run: the encoder and the full pretraining model as a Hub-ready weights folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..hub import save_pretrained
from ..models import CLMAE, METHOD_TITLES


def export_pretrained(model: CLMAE, folder: str | os.PathLike, train_config: dict[str, Any]) -> Path:
    """Write ``model`` with :func:`clmae.save_pretrained` (timm ``config.json``, ``model.safetensors`` with the
    encoder, ``pretraining.safetensors`` with the whole model, model card) and the run's ``train_config.json``.

    Args:
        model: the trained pretraining model.
        folder: output folder.
        train_config: the run's ``TrainConfig`` as a dict (recorded in the folder).
    """
    folder = Path(folder)
    description = (
        f"{METHOD_TITLES[model.method]} pretraining of `{train_config['model']}` for {train_config['epochs']} epochs "
        f"on `{train_config.get('data', '')}` with `clmae train` (recipe `{train_config.get('recipe') or 'custom'}`)."
    )
    save_pretrained(model, folder, name=train_config["model"], metadata={"description": description})
    (folder / "train_config.json").write_text(json.dumps(train_config, indent=2))
    return folder
