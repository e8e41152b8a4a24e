"""Download one file from the Hugging Face Hub through ``huggingface_hub``'s cache and verify its sha256."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.utils import (
    EntryNotFoundError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    validate_repo_id,
)

from .._files import sha256_file
from .._version import __version__


class ChecksumError(ValueError):
    """A file's sha256 differs from the registry's: the file is not used."""


def check_sha256(path: Path, expected: str, where: str, remedy: str) -> None:
    """Raise :class:`ChecksumError` (naming ``where`` and the ``remedy``) unless ``path`` has sha256 ``expected``."""
    digest = sha256_file(path)
    if digest != expected.lower():
        raise ChecksumError(
            f"sha256 of {where} is {digest}, the registry expects {expected}; the file was not loaded. {remedy}"
        )


def check_repo_id(repo_id: str, name: str | None = None) -> str:
    """``repo_id`` if ``huggingface_hub`` accepts it as ``org/name``; a ``ValueError`` at once otherwise (no
    request is made)."""
    where = f"{name!r}: " if name else ""
    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"{where}{repo_id!r} is not a Hub repository id: expected org/name (hf-hub:org/name[@rev])")
    try:
        validate_repo_id(repo_id)
    except HFValidationError as e:
        raise ValueError(f"{where}{repo_id!r} is not a valid Hub repository id: {e}") from None
    return repo_id


# What git refuses in a ref name (git check-ref-format), plus "..": a revision is a branch, tag or commit id.
_BAD_REVISION = (" ", "~", "^", ":", "?", "*", "[", "\\", "..", "@{", "//")


def check_revision(revision: str | None, name: str | None = None) -> str | None:
    """``revision`` (or ``None``) if it can be a git branch, tag or commit id; a ``ValueError`` at once otherwise.

    ``huggingface_hub`` has no validator of its own for revisions; these are git's ref-name rules (``..``, spaces,
    ``~^:?*[\\``, control characters, a leading ``/``, ``-`` or ``.``, a trailing ``/``, ``.`` or ``.lock``).
    """
    if revision is None:
        return None
    bad = (
        not isinstance(revision, str)
        or not revision
        or any(part in revision for part in _BAD_REVISION)
        or any(ord(c) < 32 or ord(c) == 127 for c in revision)
        or revision.startswith(("/", "-", "."))
        or revision.endswith(("/", ".", ".lock"))
    )
    if bad:
        where = f"{name!r}: " if name else ""
        raise ValueError(
            f"{where}revision {revision!r} is not a git branch, tag or commit id (e.g. main, v1.0, refs/pr/1 or a "
            "40-hex commit; no '..', spaces or ~^:?*[\\)"
        )
    return revision


def hub_unreachable(timeout: float = 3.0) -> str | None:
    """Why the Hub endpoint (``HF_ENDPOINT``) cannot be reached, or ``None`` when it answers a TCP connection within
    ``timeout`` seconds (or a proxy is set, which only a request can test).

    Without it, a machine with no network spends about a minute in ``huggingface_hub``'s retries, printing each one,
    before every download fails; with it a load fails in seconds (or uses the cache) with one clear line.
    """
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urlsplit(constants.ENDPOINT)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    if not host:
        return None
    return _unreachable(host, port, timeout)


@lru_cache(maxsize=8)
def _unreachable(host: str, port: int, timeout: float) -> str | None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        return f"{host}:{port}: {e.strerror or e}"
    return None


def _offline() -> bool:
    # Read at call time as well: huggingface_hub reads HF_HUB_OFFLINE once, at import.
    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def fetch(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    sha256: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    needed: Sequence[str] = (),
) -> Path:
    """Path of ``filename`` from Hub repo ``repo_id`` at ``revision``, downloaded into the Hub cache if needed.

    Args:
        repo_id: ``org/name`` (checked before any request).
        filename: file in the repo.
        revision: commit id, branch or tag (``None``: ``main``; checked before any request).
        sha256: expected hex digest; a mismatch raises :class:`ChecksumError` before anyone reads the file.
        cache_dir: Hub cache folder (default: ``huggingface_hub``'s, ``$HF_HUB_CACHE``).
        local_files_only: use the cache only; ``None`` follows ``HF_HUB_OFFLINE``.
        needed: every file the caller will fetch from this repo (``filename`` among them): the error of a cache
            miss offline names the one command that downloads them all.

    Returns:
        The local path.
    """
    check_repo_id(repo_id)
    check_revision(revision)
    offline = _offline() if local_files_only is None else local_files_only
    where = f"{repo_id}@{revision or 'main'}/{filename}"
    unreachable = None if offline else hub_unreachable()
    if unreachable:  # no network: the cache alone, at once, instead of a minute of retries
        offline = True
    try:
        path = hf_hub_download(
            repo_id,
            filename,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
            library_name="clmae",
            library_version=__version__,
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        files = list(dict.fromkeys([*needed, filename]))
        why = (
            f"the Hub cannot be reached ({unreachable}; no network?); set HF_HUB_OFFLINE=1 to use the cache "
            "without trying the network"
            if unreachable
            else "downloads are off (HF_HUB_OFFLINE=1 or local_files_only=True), or the Hub could not be reached"
        )
        cmd = f"hf download {repo_id} {' '.join(files)}"
        cmd += (f" --revision {revision}" if revision else "") + (f" --cache-dir {cache_dir}" if cache_dir else "")
        py = f"huggingface_hub.snapshot_download({repo_id!r}, allow_patterns={files!r}"
        py += f", revision={revision!r}" if revision else ""
        py += f", cache_dir={str(cache_dir)!r}" if cache_dir else ""
        raise FileNotFoundError(
            f"{where} is not in the local Hub cache{f' ({cache_dir})' if cache_dir else ''} and {why}. With network "
            "access, get "
            f"every file this needs ({', '.join(files)}) at once: `{cmd}` (in Python: {py})), then work offline."
        ) from None
    except RepositoryNotFoundError as e:
        raise FileNotFoundError(
            f"Hub repository {repo_id!r} not found (or it is private: log in with `hf auth login`)"
        ) from e
    except RevisionNotFoundError as e:
        raise FileNotFoundError(f"revision {revision!r} not found in Hub repository {repo_id!r}") from e
    except EntryNotFoundError as e:
        raise FileNotFoundError(
            f"{filename} not found in Hub repository {repo_id!r} at revision {revision or 'main'!r}"
        ) from e
    path = Path(path)
    if sha256 is not None:
        check_sha256(
            path,
            sha256,
            where,
            f"The cached copy ({path}) is corrupt or the repository changed: delete it and download again; "
            "if it still differs, report it: never edit the registry's sha256 to match an unknown file.",
        )
    return path
