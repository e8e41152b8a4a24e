"""safetensors files as clmae writes and reads them: canonical bytes, metadata that records each tensor's sha256 and
what the weights were saved as, and a reader whose errors say what to do."""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save

from ._atomic import write_file
from ._parse import parse_json

# Keys of the str -> str metadata that clmae writes into a weights file (safetensors' header), read back by the
# loaders: what the file was saved as, so that a config.json edited later (or copied from other weights) is caught,
# and each tensor's sha256 (of its raw bytes), so that damaged tensor data is caught.
META_ARCHITECTURE = "clmae.architecture"  # config.json's "architecture" (timm's name)
META_MODEL_ARGS = "clmae.model_args"  # config.json's "model_args", as JSON
META_CONFIG = "clmae.config"  # config.json's "clmae": {"config": ...} (the pretraining model's), as JSON
META_TENSOR_SHA256 = "clmae.tensor_sha256"  # {tensor name: sha256 of its bytes}, as JSON
_RECORDED = {META_ARCHITECTURE: ("architecture",), META_MODEL_ARGS: ("model_args",), META_CONFIG: ("clmae", "config")}


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


def write_safetensors(
    state: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str], what: str = "weights file"
) -> Path:
    """:func:`safetensors_bytes` written to ``path`` atomically (:func:`clmae._atomic.write_file`), with the mode new
    files get from the umask."""
    return write_file(path, safetensors_bytes(state, metadata), what=what)


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
