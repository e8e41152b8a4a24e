"""File helpers shared across clmae: safetensors, ``config.json`` and torch-checkpoint readers whose errors say
what to do, the state-dict comparison and sha256."""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import zipfile
from collections.abc import Mapping
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


def load_torch_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a torch checkpoint (a pickle) with ``torch.load(weights_only=True)``.

    Only tensors, plain containers and ``argparse.Namespace`` (the ``args`` entry of the CL-MAE / MAE reference's
    checkpoints) are unpickled; anything else is refused. The Namespace is allowed with
    ``torch.serialization.safe_globals`` (torch >= 2.5) or, on torch 2.4, ``add_safe_globals`` (process-wide). Older
    torch can allow no class: checkpoints without ``args`` (clmae's) still load, those with it get an error that says
    how to re-save them.

    Args:
        path: the ``.pt`` / ``.pth`` file.
        map_location: where its tensors go (default: the CPU).

    Returns:
        The checkpoint's dict.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated or corrupt, holds other objects, or is not a dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    allowed = [argparse.Namespace]
    safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5: a context manager
    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)  # torch >= 2.4: process-wide
    try:
        if safe_globals is not None:
            with safe_globals(allowed):
                ckpt = torch.load(path, map_location=map_location, weights_only=True)
        else:
            if add_safe_globals is not None:
                add_safe_globals(allowed)
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive: this is no checkpoint, or a damaged one
            raise ValueError(
                f"{path} is not a torch checkpoint (not the zip archive torch.save writes) or it is "
                "truncated or corrupt"
            ) from e
        old_torch = ""
        if safe_globals is None and add_safe_globals is None:
            old_torch = (
                f" torch {torch.__version__} cannot allow argparse.Namespace (that needs torch >= 2.4), so a "
                "checkpoint that stores its training arguments ('args') cannot be read: upgrade torch, or"
            )
        raise ValueError(
            f"{path} holds objects other than tensors, plain containers and argparse.Namespace, so it cannot be "
            f"loaded safely (weights_only=True): {str(e).strip().splitlines()[0]}.{old_torch} Re-save only its "
            "'model' state dict from a trusted environment: torch.save({'model': ckpt['model']}, 'clean.pth')"
        ) from e
    except PermissionError:
        raise
    except (RuntimeError, EOFError, OSError) as e:  # torch's zip reader raises all three for a damaged file
        raise ValueError(
            f"{path} is not a readable torch checkpoint ({type(e).__name__}: {e}); it is truncated or corrupt"
        ) from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} holds a {type(ckpt).__name__}, expected a dict with a 'model' state dict")
    return ckpt


def state_differences(
    model: nn.Module, state: Mapping[str, torch.Tensor], optional: tuple[str, ...] = ()
) -> tuple[list[str], list[str], list[str]]:
    """How ``state`` differs from ``model``'s state dict, before a strict ``load_state_dict``.

    Args:
        model: the module the weights are for.
        state: the weights.
        optional: key prefixes that may be missing (e.g. a new classifier head).

    Returns:
        ``(missing, unexpected, shapes)``: keys of the model that ``state`` lacks (except ``optional`` ones), keys of
        ``state`` the model does not have, and ``"KEY (state shape) vs (model shape)"`` for shapes that differ; all
        empty when a strict load will succeed.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in got and not (optional and k.startswith(optional))]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k} {got[k]} vs {expected[k]}" for k in got if k in expected and got[k] != expected[k]]
    return missing, unexpected, shapes


def check_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], where: str, optional: tuple = (), fix: str | None = None
) -> None:
    """Same keys and shapes, or a ``ValueError`` naming the differences.

    Args:
        model: the module the weights are for.
        state: the weights.
        where: their origin, for the message.
        optional: key prefixes of ``model`` that ``state`` may lack (a new classifier head).
        fix: what to do about a mismatch (default: the weights and the config come from different models).
    """
    missing, unexpected, shapes = state_differences(model, state, tuple(optional))
    if missing or unexpected or shapes:
        raise ValueError(
            f"weights in {where} do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}, shapes "
            f"(weights vs model) {shapes[:3]}; " + (fix or "the config and the weights come from different models")
        )
