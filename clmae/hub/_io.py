"""File helpers shared by the hub modules: safetensors and config reading with errors that say what to do."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PRETRAINING_NAME = "pretraining.safetensors"
CARD_NAME = "README.md"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a safetensors file on the CPU; a ``ValueError`` naming the file if it is truncated or not safetensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(
            f"{path} is not a readable safetensors file ({e}); it is truncated or corrupt. Delete it and download "
            "or export it again."
        ) from e


def read_config(path: str | Path) -> dict[str, Any]:
    """A weights folder's ``config.json`` (the file or its folder), checked for the fields a timm config must have."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: a weights folder needs config.json (timm format) next to model.safetensors; "
            "write one with clmae.save_pretrained()"
        )
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); export the folder again with clmae.save_pretrained()") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(cfg).__name__}")
    missing = [k for k in ("architecture", "pretrained_cfg") if k not in cfg]
    if missing:
        raise ValueError(
            f"{path} is not a timm model config: it lacks {', '.join(missing)}. Expected keys: architecture, "
            "num_classes, model_args, pretrained_cfg (see weights/README.md)"
        )
    if not isinstance(cfg.get("model_args", {}), dict) or not isinstance(cfg["pretrained_cfg"], dict):
        raise ValueError(f"{path}: model_args and pretrained_cfg must be JSON objects")
    return cfg


def check_state(model: nn.Module, state: dict[str, torch.Tensor], where: str, optional: tuple = ()) -> None:
    """Same keys and shapes, or a ``ValueError`` naming the differences (keys starting with ``optional`` may be
    missing: a new classifier head)."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in got and not k.startswith(optional or ("\0",))]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k} {got[k]} vs {expected[k]}" for k in got if k in expected and got[k] != expected[k]]
    if missing or unexpected or shapes:
        raise ValueError(
            f"weights in {where} do not match the model built from its config.json: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shapes (file vs model) {shapes[:3]}; the config and the weights come "
            "from different models"
        )
