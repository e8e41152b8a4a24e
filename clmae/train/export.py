"""The end of a run: the encoder and the full pretraining model as a Hub-ready weights folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from ..models.pretrainer import CLMAE


def export_pretrained(model: CLMAE, folder: str | os.PathLike, train_config: dict[str, Any]) -> Path:
    """Write ``model`` with :func:`clmae.hub.save_pretrained` (timm ``config.json``, ``model.safetensors`` with the
    encoder, ``pretraining.safetensors`` with the whole model, model card).

    Without ``clmae.hub`` (an older install) it writes ``model.safetensors``, ``pretraining.safetensors`` and a
    ``config.json`` with the model's and the run's config itself.

    Args:
        model: the trained pretraining model.
        folder: output folder.
        train_config: the run's ``TrainConfig`` as a dict (recorded in the folder).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from ..hub import save_pretrained
    except ImportError:
        save_pretrained = None
    if save_pretrained is not None:
        data = train_config.get("data", "")
        metadata = {
            "method": model.method,
            "description": (
                f"{'CL-MAE' if model.method == 'clmae' else 'MAE'} pretraining of `{train_config['model']}` for "
                f"{train_config['epochs']} epochs on `{data}` with `clmae train` (recipe "
                f"`{train_config.get('recipe') or 'custom'}`)."
            ),
        }
        save_pretrained(model, folder, name=train_config["model"], metadata=metadata)
    else:
        save_file({k: v.contiguous() for k, v in model.encoder.state_dict().items()}, folder / "model.safetensors")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "pretraining.safetensors")
        (folder / "config.json").write_text(json.dumps({"clmae": model.config}, indent=2, default=str))
    (folder / "train_config.json").write_text(json.dumps(train_config, indent=2))
    return folder
