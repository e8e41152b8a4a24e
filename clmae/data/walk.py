"""The one walk over users' folders: symbolic links are followed, but each real folder is read once, so a link cycle
(``ln -s .. loop/up``) ends the walk instead of hanging it. Every reader of a user's folder (training data, ``clmae
extract``, evaluation ImageFolders) lists its files with :func:`walk_files`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path


def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def walk_files(
    root: str | os.PathLike,
    hidden: bool = False,
    warn: Callable[[str], None] | None = _warn,
) -> list[tuple[str, ...]]:
    """Every file under ``root`` at any depth, as its path's parts relative to ``root``, sorted.

    Links to folders are followed; a folder reached again (a link cycle, or a second link to a folder already read)
    is skipped, and the skips are reported in one warning.

    Args:
        root: the folder.
        hidden: include names starting with ``.`` (skipped by default, files and folders alike).
        warn: where the warning goes (default: standard error); ``None`` for no warning.

    Raises:
        OSError: a folder under ``root`` cannot be read (its path is named).
    """
    root = Path(root)
    seen: set[tuple[int, int]] = set()
    skipped: list[str] = []
    found: list[tuple[str, ...]] = []
    stack: list[tuple[str, ...]] = [()]
    while stack:
        rel = stack.pop()
        folder = root.joinpath(*rel)
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen:
            skipped.append(os.path.join(*rel))
            continue
        seen.add((st.st_dev, st.st_ino))
        subfolders = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if not hidden and entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir():  # follows links
                        subfolders.append((*rel, entry.name))
                    elif entry.is_file():
                        found.append((*rel, entry.name))
                except OSError:  # a link loop of its own (a -> a) or a vanished entry: neither file nor folder
                    continue
        stack += sorted(subfolders, reverse=True)  # depth-first, in name order: the first path to a folder wins
    if skipped and warn is not None:
        more = f" and {len(skipped) - 1} more" if len(skipped) > 1 else ""
        warn(
            f"warning: {root}: skipped {os.path.join(root, skipped[0])}{more}, a link to a folder already read "
            "(a symbolic-link cycle, or a second link to the same folder); its files are counted once"
        )
    return sorted(found)
