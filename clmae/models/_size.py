"""A model's size, known before it is built: each stack of blocks (encoder, decoder, masking module) is built with at
most one block on the ``meta`` device (no memory, no initialisation), and its other blocks are counted from that one,
so ``depth=10**6`` is sized in milliseconds. A model that would not fit the memory at hand is refused by name."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from .._disk import human_bytes

# Arguments that change how many numbers a model holds: the ones named when a model is too large.
SIZE_ARGS = (
    "depth",
    "embed_dim",
    "mlp_ratio",
    "img_size",
    "patch_size",
    "in_chans",
    "num_classes",
    "reg_tokens",
    "decoder_embed_dim",
    "decoder_depth",
    "masker_depth",
    "masker_mlp_ratio",
)


def _numel(module: nn.Module) -> int:
    return sum(t.numel() for t in (*module.parameters(), *module.buffers()))


def stack_numel(build: Callable[[int], nn.Module], depth: int) -> tuple[int, nn.Module]:
    """Numbers held by ``build(depth)``, found from ``build(min(depth, 1))`` on the meta device: its blocks (the
    ``blocks`` attribute) are identical, so each block after the first adds the first one's count.

    Returns:
        The count and the meta module built.
    """
    with torch.device("meta"):
        module = build(min(depth, 1))
    total = _numel(module)
    if depth > 1:
        total += (depth - 1) * _numel(module.blocks[0])
    return total, module


def too_large(error: BaseException) -> float | None:
    """``inf`` for the error torch raises when a tensor's size overflows (a count too large to address), else
    ``None`` (the build is left to say what is wrong)."""
    return math.inf if "overflow" in str(error).lower() or isinstance(error, OverflowError) else None


def memory(device: str | torch.device = "cpu") -> tuple[int, int] | None:
    """``(total, free)`` bytes of ``device``'s memory: ``MemTotal`` and ``MemAvailable`` of ``/proc/meminfo`` (else
    the physical pages) for the CPU, ``torch.cuda.mem_get_info`` for a GPU; ``None`` where the system does not say."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, total = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError):
            return None
        return total, free
    if device.type != "cpu":
        return None
    info = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                info[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    if "MemTotal" in info:
        return info["MemTotal"], info.get("MemAvailable", info.get("MemFree", info["MemTotal"]))
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return os.sysconf("SC_PHYS_PAGES") * page, os.sysconf("SC_AVPHYS_PAGES") * page
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(
    what: str,
    numel: Callable[[Mapping[str, Any]], float | None],
    given: Mapping[str, Any],
    device: str | torch.device = "cpu",
    copies: int = 1,
    purpose: str = "its weights",
) -> None:
    """A ``ValueError`` if ``what`` would not fit ``device``'s memory (its total: what is free changes from moment to
    moment, and a model larger than the whole memory can never be built); nothing is allocated.

    Args:
        what: the model, for the message.
        numel: the model's number count for given arguments (``inf``: beyond what torch can address; ``None``:
            unknown, the build will tell).
        given: the arguments the user gave (the architecture's defaults fill the rest).
        device: where the model will live.
        copies: float32 copies needed (1 for the weights; 4 to train: weights, gradients and AdamW's two moments).
        purpose: what the copies are, for the message.
    """
    count = numel(given)
    mem = memory(device)
    if count is None or mem is None:
        return
    total, free = mem
    itemsize = torch.empty((), dtype=torch.get_default_dtype(), device="meta").element_size()
    need = count * itemsize * copies
    if need <= total:  # what is free changes from moment to moment; more than the whole memory never fits
        return
    size = f"about {human_bytes(need)} for {purpose} ({count:,} numbers)"
    if math.isinf(need):
        size = f"more than {human_bytes(2**63)} for {purpose} (a tensor larger than torch can address)"
    # Name the size argument whose default would shrink the model most.
    culprits = []
    for key in [k for k in given if k in SIZE_ARGS]:
        smaller = numel({k: v for k, v in given.items() if k != key})
        culprits.append((smaller if smaller is not None else count, key))
    subject = f"{what} is"
    if culprits:
        key = min(culprits)[1]
        subject = f"model argument {key}={given[key]!r} makes {what}"
    raise ValueError(
        f"{subject} too large: {size}, and {torch.device(device)} has {human_bytes(total)} of memory "
        f"({human_bytes(free)} free now); choose smaller model arguments"
    )
