"""The one way clmae writes a file or a folder: built beside the target under a temporary name, flushed to disk, then
renamed into place, so that a failed or killed write leaves the earlier file or folder whole and no temporary behind.

Also the rule every command follows before it writes: a target that holds what the command did not write for the
same purpose (a user's file, another format's folder) is refused with one line, unless ``--overwrite`` is given,
which replaces it as a whole.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ._disk import SPACE_ERRNOS, DiskFullError

_TOO_BIG_ERRNOS = {errno.EFBIG}  # a file-size limit (``ulimit -f``, with SIGXFSZ ignored)


def name_max(folder: str | os.PathLike) -> int:
    """The longest file name (in bytes) that the file system of ``folder`` (or its nearest existing parent) takes."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def temp_path(target: str | os.PathLike, kind: str = "tmp", pid: int | None = None) -> Path:
    """A hidden name beside ``target`` for a temporary of this process: ``.NAME.KINDPID``.

    When that would exceed the file system's name limit (a valid 250-byte ``NAME``), ``NAME`` is shortened and a
    hash of the whole name keeps it unique: ``.SHORT~HASH.KINDPID``.
    """
    target = Path(target)
    pid = os.getpid() if pid is None else pid
    suffix = f".{kind}{pid}"
    name = target.name
    limit = name_max(target.parent)
    reserve = len(f".{kind}") + 10  # the longest process id: the shortened name does not depend on it
    if len(f".{name}".encode()) + reserve <= limit:
        return target.with_name(f".{name}{suffix}")
    tag = "~" + hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
    room = limit - reserve - len(f".{tag}".encode())
    short = name.encode("utf-8", "surrogateescape")[: max(room, 0)].decode("utf-8", "ignore")
    return target.with_name(f".{short}{tag}{suffix}")


class WriteError(OSError):
    """A write that failed (other than for space): its message is the whole line, without the ``[Errno N]`` prefix."""

    def __str__(self) -> str:
        return self.strerror


def _failed(target: Path, what: str, error: OSError) -> OSError:
    """The error of a failed write as one line that names the target and says that the earlier one is whole."""
    keep = "the earlier one is unchanged" if target.exists() else "nothing was written"
    if error.errno in SPACE_ERRNOS:
        return DiskFullError(f"no space left to write {what} {target}; free some space or write elsewhere ({keep})")
    if error.errno in _TOO_BIG_ERRNOS:
        return WriteError(
            error.errno,
            f"cannot write {what} {target}: it exceeds the file-size limit (ulimit -f); raise the limit or write "
            f"elsewhere ({keep})",
        )
    reason = error.strerror or str(error)
    return WriteError(error.errno, f"cannot write {what} {target}: {reason} ({keep})")


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None], *, what: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically.

    The bytes (or what ``data(f)`` writes to the open binary file ``f``) go to a temporary file beside ``path``, which
    is flushed, fsynced and renamed over ``path``. A write that fails for any reason (a full disk, a file-size limit,
    an error in ``data``, Ctrl-C) removes the temporary and leaves an earlier ``path`` as it was. The file gets the
    mode new files get from the umask (0644 by default). Missing parent folders are created.

    Args:
        path: the file to write.
        data: its bytes, or a callback that writes them to a binary file object (e.g. ``torch.save``).
        what: what the file is, for error messages (``"features file"``).

    Returns:
        ``path``.

    Raises:
        DiskFullError: no space left (``ENOSPC``, a quota).
        OSError: any other failed write, as one line naming ``path`` (the temporary removed).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _failed(path, what, e) from None
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        written = tmp.stat().st_size if tmp.exists() else 0
        tmp.unlink(missing_ok=True)
        if not isinstance(e, OSError) and _at_size_limit(written):  # torch.save reports EFBIG as a RuntimeError
            e = OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        if isinstance(e, OSError) and not isinstance(e, DiskFullError):
            raise _failed(path, what, e) from None
        raise
    _fsync_folder(path.parent)
    return path


def _at_size_limit(size: int) -> bool:
    """Whether a file of ``size`` bytes has reached this process's file-size limit (``ulimit -f``)."""
    try:
        import resource
    except ImportError:  # pragma: no cover (not on Windows)
        return False
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return limit != resource.RLIM_INFINITY and size >= limit - (1 << 16)


def write_text(path: str | os.PathLike, text: str, *, what: str = "file") -> Path:
    """:func:`write_file` of UTF-8 text."""
    return write_file(path, text.encode("utf-8"), what=what)


def remove(path: str | os.PathLike) -> None:
    """Remove a file, link or folder tree, if it exists."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def check_target(
    target: str | os.PathLike,
    owned: Callable[[Path], bool],
    what: str,
    *,
    overwrite: bool = False,
    folder: bool = True,
) -> Path:
    """Refuse a target that holds what this command did not write for the same purpose.

    A missing target, an empty folder (``folder``) or one that ``owned`` accepts (an earlier result of the same
    kind) may be replaced; anything else is refused with one line naming it, unless ``overwrite``. A file where a
    folder is wanted (or the reverse) is refused even with ``overwrite``: that is a wrong path, not an old result.

    Args:
        target: the folder (``folder``) or file to write.
        owned: whether an existing target is an earlier result of this kind.
        what: what the command writes (``"a clmae-format weights folder"``), for the message.
        overwrite: replace whatever is there (``--overwrite``).
        folder: the target is a folder (else a file).

    Returns:
        ``target`` as a path.

    Raises:
        ValueError: the target is in the way.
    """
    target = Path(target)
    if not (target.exists() or target.is_symlink()):
        return target
    if folder and not target.is_dir():
        raise ValueError(f"{target} is a file, not a folder; give a folder for {what}")
    if not folder and target.is_dir():
        raise ValueError(f"{target} is a folder; give a file name for {what}")
    if overwrite or (folder and not any(target.iterdir())) or owned(target):
        return target
    if folder:
        raise ValueError(
            f"{target} exists and is not {what} (it holds other files); choose a new folder, or pass --overwrite "
            "to replace the folder as a whole"
        )
    raise ValueError(f"{target} exists and is not {what}; choose a new file, or pass --overwrite to replace it")


def write_folder(folder: str | os.PathLike, build: Callable[[Path], object], *, what: str = "folder") -> Path:
    """Write a folder whole or not at all: ``build(tmp)`` fills a temporary folder beside ``folder``, which then takes
    the place of ``folder`` (an existing ``folder`` is set aside first and removed after).

    A failure while building (a full disk, a file-size limit, a bad value) removes the temporary folder and leaves
    ``folder`` as it was; between the two renames a killed process leaves the earlier folder under
    ``.NAME.oldPID`` (see :func:`clmae.train.export.remove_export_debris`). Call :func:`check_target` first.

    Returns:
        ``folder``.
    """
    folder = Path(folder)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _failed(folder, what, e) from None
    tmp, old = temp_path(folder, "tmp"), temp_path(folder, "old")
    remove(tmp)
    try:
        tmp.mkdir()
        build(tmp)
    except BaseException as e:
        remove(tmp)
        if isinstance(e, OSError) and not isinstance(e, DiskFullError):
            raise _failed(folder, what, e) from None
        raise
    if folder.exists() or folder.is_symlink():
        os.replace(folder, old)
    os.replace(tmp, folder)
    remove(old)
    _fsync_folder(folder.parent)
    return folder


def owned_folder(folder: str | os.PathLike, names: set[str] | frozenset[str], config: Callable[[dict], bool]) -> bool:
    """Whether ``folder`` holds only files named in ``names`` and a ``config.json`` that ``config`` accepts: an
    earlier result of the writer that writes those files (anything unreadable or unexpected says no)."""
    from ._parse import parse_json

    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
        if not all(p.name in names and p.is_file() and not p.is_symlink() for p in entries):
            return False
        text = (folder / "config.json").read_text(encoding="utf-8")
        cfg = parse_json(text, "config.json")
        return isinstance(cfg, dict) and bool(config(cfg))
    except (OSError, ValueError, RecursionError):
        return False
