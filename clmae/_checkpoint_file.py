"""The reader of torch checkpoints (pickles): ``torch.load(weights_only=True)``, with errors that say what the file
is instead and what to do."""

from __future__ import annotations

import argparse
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from ._files import CONFIG_NAME, is_safetensors


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
    if path.is_dir():
        inside = sorted(path.glob("checkpoint-*.pt"))
        hint = f", e.g. {inside[-1]}" if inside else ""
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint file; give a checkpoint file inside it{hint}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if is_safetensors(path):
        folder = path.parent
        if (folder / CONFIG_NAME).is_file():
            raise ValueError(
                f"{path} is already clmae weights (safetensors, with {folder / CONFIG_NAME} beside it), not a torch "
                f"checkpoint: nothing to convert; load the folder with clmae.load_pretrained('{folder}')"
            )
        raise ValueError(
            f"{path} is a safetensors weights file, not a torch checkpoint (.pt/.pth); load it with "
            f"clmae.load_pretrained('{path}', arch=NAME)"
        )
    with open(path, "rb") as f:
        head = f.read(4)
    # torch.save writes a zip archive (PK\x03\x04); torch < 1.6 and _use_new_zipfile_serialization=False write a
    # pickle (protocol 2: \x80\x02). Anything else never reaches torch's unpickler.
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):
        raise ValueError(
            f"{path} is not a torch checkpoint, or it is truncated or corrupt: it starts neither as the zip archive "
            "torch.save writes nor as a pickle; give a .pt/.pth file written by torch.save (or weights as a folder "
            "or .safetensors file)"
        )
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
        # torch's message suggests weights_only=False (unpickling, i.e. running, whatever the file holds): name only
        # the refused object and clmae's way out.
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" (it refers to {found.group(1)})" if found else ""
        raise ValueError(
            f"{path} holds objects other than tensors, plain containers and argparse.Namespace{what}, so it cannot be "
            f"loaded safely (weights_only=True): unpickling them could run code from the file.{old_torch} Re-save "
            "only its 'model' state dict from a trusted environment: torch.save({'model': ckpt['model']}, 'clean.pth')"
        ) from None
    except PermissionError:
        raise
    except (RuntimeError, EOFError, OSError) as e:  # torch's zip reader raises all three for a damaged file
        raise ValueError(
            f"{path} is not a readable torch checkpoint ({type(e).__name__}: {e}); it is truncated or corrupt"
        ) from e
    if not isinstance(ckpt, dict):
        raise ValueError(f"{path} holds a {type(ckpt).__name__}, expected a dict with a 'model' state dict")
    return ckpt
