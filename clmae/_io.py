"""File helpers shared across clmae: safetensors, ``config.json`` and torch-checkpoint readers whose errors say
what to do, the state-dict comparison, sha256, file modes, and the one-line form of those errors on the terminal."""

from __future__ import annotations

import argparse
import contextlib
import errno
import hashlib
import json
import math
import os
import pickle
import re
import shutil
import struct
import threading
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save
from torch import nn

from ._atomic import DiskFullError, write_file
from ._parse import parse_json, read_json

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
PRETRAINING_NAME = "pretraining.safetensors"
CARD_NAME = "README.md"

# Keys of the str -> str metadata that clmae writes into a weights file (safetensors' header), read back by the
# loaders: what the file was saved as, so that a config.json edited later (or copied from other weights) is caught,
# and each tensor's sha256 (of its raw bytes), so that damaged tensor data is caught.
META_ARCHITECTURE = "clmae.architecture"  # config.json's "architecture" (timm's name)
META_MODEL_ARGS = "clmae.model_args"  # config.json's "model_args", as JSON
META_CONFIG = "clmae.config"  # config.json's "clmae": {"config": ...} (the pretraining model's), as JSON
META_TENSOR_SHA256 = "clmae.tensor_sha256"  # {tensor name: sha256 of its bytes}, as JSON
_RECORDED = {META_ARCHITECTURE: ("architecture",), META_MODEL_ARGS: ("model_args",), META_CONFIG: ("clmae", "config")}

_UMASK_LOCK = threading.Lock()

# Errors the commands report as one line and exit code 2: bad input (ValueError) and files that are missing,
# unreadable or in the way (OSError: FileNotFoundError, NotADirectoryError, PermissionError, ...).
USER_ERRORS = (ValueError, OSError)


_SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def human_bytes(n: float) -> str:
    """``1.8 TB``, ``12.3 GB``, ``512 B``: decimal units."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB", "EB"):
        if abs(n) < 1000 or unit == "EB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} EB"  # pragma: no cover


def free_bytes(folder: str | Path) -> int | None:
    """Bytes free for this user in the file system of ``folder`` (or of its nearest existing parent)."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def state_nbytes(value: Any) -> int:
    """Bytes of the tensors in a (nested) state: about what ``torch.save`` or safetensors will write."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(state_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(state_nbytes(v) for v in value)
    return 0


@contextlib.contextmanager
def writing(folder: str | Path, needed: int, what: str, cleanup: Callable[[], None]) -> Iterator[None]:
    """Write ``what`` into ``folder`` (about ``needed`` bytes) or fail cleanly for lack of space.

    Refused before anything is written when the file system says the bytes are not free; a write that still fails
    for space (``ENOSPC``, a quota) runs ``cleanup`` (removing the partial files) and raises :class:`DiskFullError`
    naming the folder, the bytes needed and the bytes free. Other errors also run ``cleanup``, then propagate.
    """

    def full() -> DiskFullError:
        free = free_bytes(folder)
        have = "unknown" if free is None else f"{human_bytes(free)} ({free:,} bytes)"
        return DiskFullError(
            f"no space left in {folder} for {what}: it needs about {human_bytes(needed)} ({needed:,} bytes) or more, "
            f"{have} free; free some space or write elsewhere (its partial files were removed; earlier files are "
            "intact)"
        )

    free = free_bytes(folder)
    if free is not None and needed > free:
        raise full()
    try:
        yield
    except BaseException as e:
        cleanup()
        space = isinstance(e, OSError) and e.errno in _SPACE_ERRNOS
        if isinstance(e, RuntimeError):  # torch.save turns a failed write into "unexpected pos": ask the disk
            now = free_bytes(folder)
            space = now is not None and needed > now
        if space:
            raise full() from None
        raise


def error_line(error: BaseException) -> str:
    """An error as one line for the terminal (``clmae CMD: error: LINE``): its message with line breaks folded; for
    an error that a DataLoader worker re-raised (whose text holds the worker's traceback), the original message."""
    text = str(error) or type(error).__name__
    if "Original Traceback" in text:  # "Caught ValueError in DataLoader worker process 0.\nOriginal Traceback ..."
        last = [line for line in text.splitlines() if line.strip()][-1]
        text = last.split(": ", 1)[1] if ": " in last else last
    return " ".join(text.split())


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def current_umask() -> int:
    """The process's umask, read without changing it where the OS tells it (Linux's ``/proc/self/status``); else
    set and restored at once under a lock (``os.umask`` has no read-only form; other threads that create files in
    that instant could see a umask of 0, so clmae's own writers take the lock)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def follow_umask(path: str | Path) -> None:
    """Give ``path`` the mode a new file gets from ``open()`` (``0o666 & ~umask``, 0644 by default).

    safetensors writes its files with mode 0600 (owner only), which hides weights written to a shared folder from
    the rest of a group; clmae's files are as readable as any other file the user creates.
    """
    os.chmod(path, 0o666 & ~current_umask())


def tensor_bytes(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's raw bytes (row-major, as stored in a safetensors file), as a uint8 array on the CPU."""
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def tensor_sha256(tensor: torch.Tensor) -> str:
    """Hex sha256 of a tensor's raw bytes (:func:`tensor_bytes`)."""
    return hashlib.sha256(tensor_bytes(tensor)).hexdigest()


def weights_metadata(state: Mapping[str, torch.Tensor], **recorded: Any) -> dict[str, str]:
    """The safetensors metadata clmae writes with ``state``: ``format`` (``pt``), each tensor's sha256
    (:data:`META_TENSOR_SHA256`) and ``recorded`` values as JSON, keyed by their metadata key
    (``{META_ARCHITECTURE: "vit_tiny_patch16_224", META_MODEL_ARGS: {...}}``)."""
    meta = {"format": "pt", META_TENSOR_SHA256: json.dumps({k: tensor_sha256(v) for k, v in state.items()})}
    for key, value in recorded.items():
        if key not in _RECORDED:
            raise ValueError(f"unknown weights metadata key {key!r}; expected one of {sorted(_RECORDED)}")
        meta[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return meta


def safetensors_bytes(state: Mapping[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """``safetensors.torch.save`` with a canonical header: the same tensors and metadata always give the same bytes.

    safetensors keeps the metadata in a hash map whose order changes from process to process, so the same weights
    would get another sha256 each time they are saved; here the metadata is sorted and the tensors listed in the
    order of their data.
    """
    raw = save(dict(state), metadata=metadata)
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    ordered = {} if meta is None else {"__metadata__": dict(sorted(meta.items()))}
    ordered.update(sorted(header.items(), key=lambda item: item[1]["data_offsets"]))
    text = json.dumps(ordered, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes
    return struct.pack("<Q", len(text)) + text + raw[8 + n :]


def write_safetensors(state: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> Path:
    """:func:`safetensors_bytes` written to ``path`` atomically (:func:`clmae._atomic.write_file`), with the mode new
    files get from the umask."""
    return write_file(path, safetensors_bytes(state, metadata), what="weights file")


def check_finite(state: Mapping[str, torch.Tensor], where: str) -> None:
    """A ``ValueError`` naming the first floating-point tensor of ``state`` that holds NaN or inf."""
    for key, value in state.items():
        if value.is_floating_point() or value.is_complex():
            bad = value.numel() - int(torch.isfinite(value).sum())
            if bad:
                raise ValueError(
                    f"{where}: tensor {key} holds {bad} non-finite value(s) (NaN or inf) of {value.numel()}: the "
                    "weights are damaged or come from a diverged run; use an intact file or another checkpoint"
                )


def read_safetensors(path: str | Path, *, verify: bool = True) -> dict[str, torch.Tensor]:
    """Load a safetensors file on the CPU, checked.

    Args:
        path: the file.
        verify: check each tensor against the sha256 that clmae recorded when it wrote the file (files of other
            origin have none) and refuse NaN/inf values. Registry weights, already verified by their file's sha256,
            skip it.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is truncated or not safetensors, or (``verify``) a tensor differs from its recorded
            sha256 or holds NaN/inf; the message names the file and the tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(
            f"{path} is not a readable safetensors file ({e}); it is truncated or corrupt. Delete it and download "
            "or export it again."
        ) from None
    if verify:
        recorded = _json_metadata(path, meta, META_TENSOR_SHA256) or {}
        for key, value in state.items():
            if key in recorded and tensor_sha256(value) != recorded[key]:
                raise ValueError(
                    f"{path}: tensor {key} differs from the sha256 recorded when the file was written: its data is "
                    "damaged. Delete the file and download or export it again."
                )
        check_finite(state, str(path))
    return state


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The str -> str metadata of a safetensors file's header (the tensors are not read)."""
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(
            f"{path} is not a readable safetensors file ({e}); it is truncated or corrupt. Delete it and download "
            "or export it again."
        ) from None


def _json_metadata(path: Path | str, meta: Mapping[str, str], key: str) -> Any:
    if key not in meta:
        return None
    try:
        return parse_json(meta[key], f"{path}: its metadata {key}")
    except ValueError:
        raise ValueError(f"{path}: its metadata {key} is not valid JSON; the file is damaged") from None


def _differences(saved: Any, current: Any, prefix: str) -> list[str]:
    """``"name: A in the weights, B in config.json"`` for each leaf that differs (dicts compared key by key)."""
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current), key=str):
            missing = "(absent)"
            out += _differences(saved.get(key, missing), current.get(key, missing), f"{prefix}.{key}")
        return out
    if saved == current:
        return []
    return [f"{prefix.lstrip('.')} is {json.dumps(current)} in config.json, {json.dumps(saved)} in the weights"]


def check_weights_config(weights: str | Path, config: Mapping[str, Any], config_path: str | Path) -> None:
    """Compare what :func:`clmae.save_pretrained` recorded in a weights file's metadata (the architecture, its model
    arguments, the pretraining config) with ``config.json``; a ``ValueError`` naming the differing argument.

    Files without that metadata (older folders, files written by other tools) pass.
    """
    meta = safetensors_metadata(weights)
    diffs = []
    for key, where in _RECORDED.items():
        saved = _json_metadata(weights, meta, key) if key != META_ARCHITECTURE else meta.get(key)
        if saved is None:
            continue
        current: Any = config
        for part in where:
            current = current.get(part) if isinstance(current, dict) else None
        current = json.loads(json.dumps(current))  # as JSON holds it: tuples -> lists
        diffs += _differences(saved, current, ".".join(where))
    if diffs:
        raise ValueError(
            f"{config_path} does not describe the weights in {weights}: {'; '.join(diffs[:3])}. config.json was "
            "edited after the weights were saved, or belongs to other weights; restore the original config.json "
            "(or save the model again with clmae.save_pretrained)"
        )


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
        cfg = read_json(path)
    except ValueError as e:
        raise ValueError(f"{e}; export the folder again with clmae.save_pretrained()") from None
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
    check_config_fields(cfg, path)
    return cfg


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _size(value: Any) -> bool:
    """An image or patch size as timm takes it: an int, or [height, width]."""
    return _positive_int(value) or (
        isinstance(value, (list, tuple)) and len(value) == 2 and all(_positive_int(v) for v in value)
    )


# (field, check, what it must be) for a timm/clmae config.json; a field that is absent is not checked here.
_CONFIG_FIELDS: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (("architecture",), lambda v: isinstance(v, str) and bool(v), "a timm architecture name (a string)"),
    (("num_classes",), lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    (("num_features",), _positive_int, "a positive integer"),
    (("global_pool",), lambda v: isinstance(v, str), "a string (token, avg, ...)"),
    (("model_args", "img_size"), _size, "a positive integer or [height, width]"),
    (("model_args", "patch_size"), _size, "a positive integer or [height, width]"),
    (("model_args", "in_chans"), _positive_int, "a positive integer"),
    (("model_args", "embed_dim"), _positive_int, "a positive integer"),
    (("model_args", "depth"), _positive_int, "a positive integer"),
    (("model_args", "num_heads"), _positive_int, "a positive integer"),
    (("model_args", "mlp_ratio"), lambda v: _number(v) and v > 0, "a positive number"),
    (
        ("pretrained_cfg", "input_size"),
        lambda v: isinstance(v, list) and len(v) == 3 and all(_positive_int(x) for x in v),
        "[channels, height, width] of positive integers",
    ),
    (("pretrained_cfg", "mean"), lambda v: isinstance(v, list) and all(_number(x) for x in v), "a list of numbers"),
    (
        ("pretrained_cfg", "std"),
        lambda v: isinstance(v, list) and all(_number(x) and x > 0 for x in v),
        "a list of positive numbers",
    ),
    (("pretrained_cfg", "crop_pct"), lambda v: _number(v) and v > 0, "a positive number"),
    (("pretrained_cfg", "interpolation"), lambda v: isinstance(v, str), "a string (bicubic, bilinear, ...)"),
    (("clmae",), lambda v: v is None or isinstance(v, dict), "a JSON object"),
    (("clmae", "arch"), lambda v: v is None or isinstance(v, str), "a clmae architecture name (a string)"),
    (("clmae", "method"), lambda v: v is None or isinstance(v, str), "a string (clmae or mae)"),
    (("clmae", "config"), lambda v: v is None or isinstance(v, dict), "a JSON object"),
    (("clmae", "norm_eps"), lambda v: v is None or (_number(v) and v > 0), "a positive number"),
    (("clmae", "datasets"), lambda v: isinstance(v, list), "a list"),
    (("clmae", "metrics"), lambda v: isinstance(v, dict), "a JSON object"),
)


def check_config_fields(cfg: Mapping[str, Any], path: str | Path) -> None:
    """A ``ValueError`` naming the file and the first field of a timm/clmae ``config.json`` of the wrong type or
    range (``"architecture": 123``, ``"img_size": [28]``, ``"clmae": [1, 2]``); absent fields pass."""
    for where, check, expected in _CONFIG_FIELDS:
        value: Any = cfg
        for part in where:
            if not isinstance(value, Mapping) or part not in value:
                break
            value = value[part]
        else:
            if value is None and where[0] == "pretrained_cfg":  # timm leaves some of them null: its defaults apply
                continue
            if not check(value):
                raise ValueError(
                    f"{path}: field {'.'.join(where)} must be {expected}, got {json.dumps(value)[:80]}; restore the "
                    "original config.json or export the folder again with clmae.save_pretrained()"
                )


def is_safetensors(path: str | Path) -> bool:
    """Whether ``path`` starts as a safetensors file does: an 8-byte header length, then a JSON object."""
    try:
        with open(path, "rb") as f:
            head = f.read(9)
        size = os.path.getsize(path)
    except OSError:
        return False
    return len(head) == 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


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


def check_dtypes(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """A ``ValueError`` naming the first tensor of ``state`` that holds integers (``int8``, quantized, ``bool``)
    where ``model`` has floating-point values: ``load_state_dict`` would cast it to float without a word, and the
    numbers would not be the weights (a quantized tensor needs its scale)."""
    expected = model.state_dict()
    for key, value in state.items():
        target = expected.get(key)
        if target is not None and target.is_floating_point() and not value.is_floating_point():
            raise ValueError(
                f"weights in {where}: tensor {key} is stored as {str(value.dtype).replace('torch.', '')}, the model's "
                f"is {str(target.dtype).replace('torch.', '')}: integer or quantized weights cannot be loaded exactly; "
                "dequantize them to floating point first"
            )


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
    check_dtypes(model, state, where)
    missing, unexpected, shapes = state_differences(model, state, tuple(optional))
    if missing or unexpected or shapes:
        raise ValueError(
            f"weights in {where} do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}, shapes "
            f"(weights vs model) {shapes[:3]}; " + (fix or "the config and the weights come from different models")
        )
