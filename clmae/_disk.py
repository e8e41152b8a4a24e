"""The disk-space guard around a large write: refused before it starts when the bytes are not free, and a write that
runs out of space cleaned up and reported as :class:`DiskFullError` naming the folder, the bytes needed and free."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch


class DiskFullError(OSError):
    """A write failed for lack of space (``ENOSPC``, ``EDQUOT``); the message names the folder, the bytes needed and
    the bytes free, and the partial files are already removed."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC

    def __str__(self) -> str:
        return self.args[0]


# errnos of a write that ran out of space: the disk is full, or the user's quota is spent
SPACE_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


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
        space = isinstance(e, OSError) and e.errno in SPACE_ERRNOS
        if isinstance(e, RuntimeError):  # torch.save turns a failed write into "unexpected pos": ask the disk
            now = free_bytes(folder)
            space = now is not None and needed > now
        if space:
            raise full() from None
        raise
