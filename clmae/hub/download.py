"""Download one file from the Hugging Face Hub through ``huggingface_hub``'s cache and verify its sha256."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import constants, hf_hub_download
from huggingface_hub.utils import (
    EntryNotFoundError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .._io import sha256_file
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
) -> Path:
    """Path of ``filename`` from Hub repo ``repo_id`` at ``revision``, downloaded into the Hub cache if needed.

    Args:
        repo_id: ``org/name``.
        filename: file in the repo.
        revision: commit id, branch or tag (``None``: ``main``).
        sha256: expected hex digest; a mismatch raises :class:`ChecksumError` before anyone reads the file.
        cache_dir: Hub cache folder (default: ``huggingface_hub``'s, ``$HF_HUB_CACHE``).
        local_files_only: use the cache only; ``None`` follows ``HF_HUB_OFFLINE``.

    Returns:
        The local path.
    """

    offline = _offline() if local_files_only is None else local_files_only
    where = f"{repo_id}@{revision or 'main'}/{filename}"
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
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        cmd = f"hf download {repo_id} {filename}" + (f" --revision {revision}" if revision else "")
        raise FileNotFoundError(
            f"{where} is not in the local Hub cache{f' ({cache_dir})' if cache_dir else ''} and downloads are off "
            f"(HF_HUB_OFFLINE=1 or local_files_only=True), or the Hub could not be reached. Get it once with network "
            f"access: `{cmd}` (or call this again without HF_HUB_OFFLINE), then work offline."
        ) from e
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
