"""Device names: one spelling for every command (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ...)."""

from __future__ import annotations

import torch


def check_device(device: str) -> str:
    """``device`` if it is ``"auto"`` or a CPU/CUDA device name torch understands; a ``ValueError`` otherwise."""
    if device == "auto":
        return device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    return device


def resolve_device(device: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA if available, else the CPU; any other name checked, and ``cuda[:N]`` only if torch sees
    that GPU (a ``ValueError`` otherwise, before anything runs)."""
    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} asked for, but torch sees no CUDA GPU; use device=cpu or device=auto")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(
            f"device={device} asked for, but torch sees {torch.cuda.device_count()} CUDA GPU(s) (cuda:0 to "
            f"cuda:{torch.cuda.device_count() - 1}); check CUDA_VISIBLE_DEVICES or use another index"
        )
    return dev
