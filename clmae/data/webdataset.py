"""WebDataset tar shards read map-style, with Python's ``tarfile`` only (no ``webdataset`` package).

A shard is an uncompressed tar file; a sample is the group of its members that share a key (the member's path up
to the first dot of its file name: ``n01440764/img_000017.jpg`` and ``n01440764/img_000017.cls`` form sample
``n01440764/img_000017``); its image is the member with an image extension (the first one, if several).

At start-up every shard's member headers are scanned once into an index of (shard, data offset, size) arrays;
sample ``i`` is then one seek + read of its image bytes. Random access keeps the trainer's guarantees (the
same order whatever the number of GPUs, disjoint samples across ranks and workers, bit-exact resume at any step),
which a streaming reader cannot give without buffering and skipping.
"""

from __future__ import annotations

import glob
import os
import re
import tarfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .images import IMAGE_EXTENSIONS, ImageSource

_RANGE = re.compile(r"(\d+)\.\.(\d+)")
_COMPRESSED = {b"\x1f\x8b": "gzip", b"BZh": "bzip2", b"\xfd7zXZ": "xz", b"\x28\xb5\x2f\xfd": "zstd"}
_IMAGE_EXTS = {e[1:] for e in IMAGE_EXTENSIONS}
MAX_OPEN_SHARDS = 64  # open files kept per process; the least recently used is closed beyond that
# Bounds of a brace pattern, checked before any name is built (docs/data.md): a typo such as {0..999999999} must not
# take minutes and gigabytes before the first shard is looked at.
MAX_SHARD_NAMES = 100_000
MAX_BRACE_GROUPS = 64  # brace pairs in one pattern
MAX_BRACE_DEPTH = 8  # braces inside braces


def _closing_brace(s: str, start: int) -> int:
    depth = 0
    for j in range(start, len(s)):
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            return j
    raise ValueError(f"unbalanced braces in shard pattern {s!r}; write e.g. shard-{{000000..000099}}.tar")


def _top_level_split(s: str) -> list[str]:
    parts, depth, last = [], 0, 0
    for j, c in enumerate(s):
        depth += {"{": 1, "}": -1}.get(c, 0)
        if c == "," and depth == 0:
            parts.append(s[last:j])
            last = j + 1
    return [*parts, s[last:]]


def _count_names(pattern: str, whole: str) -> int:
    """How many names ``pattern`` expands to (capped just above :data:`MAX_SHARD_NAMES`), without building them."""
    total, rest = 1, pattern
    while True:  # one brace group after another: their counts multiply
        start = rest.find("{")
        if start < 0:
            return total
        end = _closing_brace(rest, start)
        body = rest[start + 1 : end]
        m = _RANGE.fullmatch(body)
        if m and max(len(m.group(1).lstrip("0")), len(m.group(2).lstrip("0"))) > 12:  # int() of 5,000 digits fails
            n = MAX_SHARD_NAMES + 1
        elif m:
            n = max(int(m.group(2)) - int(m.group(1)) + 1, 1)
        else:  # a list: its alternatives add up
            n = sum(_count_names(part, whole) for part in _top_level_split(body)) if body else 1
        total = min(total * n, MAX_SHARD_NAMES + 1)
        rest = rest[end + 1 :]


def check_pattern_size(pattern: str) -> int:
    """The number of names a brace pattern expands to, counted before any is built.

    Raises:
        ValueError: more than :data:`MAX_SHARD_NAMES` names, :data:`MAX_BRACE_GROUPS` brace pairs or
            :data:`MAX_BRACE_DEPTH` levels of braces inside braces, or unbalanced braces; the message names the limit.
    """
    depth = deepest = groups = 0
    for c in pattern:
        if c == "{":
            depth += 1
            groups += 1
            deepest = max(deepest, depth)
        elif c == "}":
            depth -= 1
    if groups > MAX_BRACE_GROUPS or deepest > MAX_BRACE_DEPTH:
        raise ValueError(
            f"shard pattern {pattern[:80]!r}{'...' if len(pattern) > 80 else ''} has {groups} brace pairs nested "
            f"{deepest} deep; at most {MAX_BRACE_GROUPS} pairs, {MAX_BRACE_DEPTH} deep are expanded: name the shards "
            "with one range such as shard-{000000..000999}.tar, a glob or a folder"
        )
    n = _count_names(pattern, pattern)
    if n > MAX_SHARD_NAMES:
        raise ValueError(
            f"shard pattern {pattern[:80]!r}{'...' if len(pattern) > 80 else ''} expands to more than "
            f"{MAX_SHARD_NAMES:,} names (the limit); check the range bounds (e.g. shard-{{000000..000999}}.tar), or "
            "pack the images into fewer, larger shards"
        )
    return n


def expand_braces(pattern: str) -> list[str]:
    """Expand brace ranges ``{000..099}`` (zero-padded when a bound is) and lists ``{a,b}``, as the shell does.

    The names are counted first (:func:`check_pattern_size`): a pattern of more than :data:`MAX_SHARD_NAMES` names
    is refused before any is built.

    Raises:
        ValueError: unbalanced braces, an empty ``{}``, a range whose first bound is above its last, or a pattern
            beyond the limits.
    """
    check_pattern_size(pattern)
    return _expand(pattern)


def _expand(pattern: str) -> list[str]:
    start = pattern.find("{")
    if start < 0:
        if "}" in pattern:
            raise ValueError(f"unbalanced braces in shard pattern {pattern!r}; write e.g. shard-{{000000..000099}}.tar")
        return [pattern]
    end = _closing_brace(pattern, start)
    head, body, tails = pattern[:start], pattern[start + 1 : end], _expand(pattern[end + 1 :])
    m = _RANGE.fullmatch(body)
    if m:
        lo, hi = m.groups()
        if int(lo) > int(hi):
            raise ValueError(f"brace range {{{body}}} in {pattern!r} is empty; write the lower bound first")
        width = max(len(lo), len(hi)) if (len(lo) > 1 and lo[0] == "0") or (len(hi) > 1 and hi[0] == "0") else 0
        choices = [str(k).zfill(width) for k in range(int(lo), int(hi) + 1)]
    elif body:
        choices = [c for part in _top_level_split(body) for c in _expand(part)]
    else:
        raise ValueError(f"empty braces {{}} in shard pattern {pattern!r}; list names {{a,b}} or a range {{000..009}}")
    return [head + c + t for c in choices for t in tails]


def expand_shards(pattern: str | os.PathLike) -> list[Path]:
    """The shard files named by ``pattern``: a folder (all its ``*.tar``, sorted), brace ranges/lists, or globs.

    Brace expansions keep their order; each glob is sorted. Whether the files exist is checked by the reader.

    Raises:
        FileNotFoundError: a folder with no ``.tar`` file, or a glob that matches nothing.
        ValueError: a malformed brace pattern (see :func:`expand_braces`).
    """
    pattern = os.path.expanduser(str(pattern))
    if os.path.isdir(pattern):
        shards = sorted(p for p in Path(pattern).glob("*.tar") if p.is_file())
        if not shards:
            raise FileNotFoundError(f"no .tar shards in folder {pattern}; write shards there or give a pattern")
        return shards
    shards = []
    for name in expand_braces(pattern):
        if glob.has_magic(name):
            matches = sorted(glob.glob(name))
            if not matches:
                raise FileNotFoundError(f"no shard matches {name}; check the path of the wds: pattern")
            shards += [Path(m) for m in matches]
        else:
            shards.append(Path(name))
    return shards


def _image_key(member: tarfile.TarInfo) -> str | None:
    """The sample key of an image member (a regular file KEY.EXT, EXT an image extension, nothing hidden), else None."""
    name = member.name.removeprefix("./")
    folder, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    if (
        not member.isfile()
        or ext.lower() not in _IMAGE_EXTS
        or not stem
        or any(p.startswith(".") for p in name.split("/"))
    ):
        return None
    return f"{folder}/{stem}" if folder else stem


def index_shard(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Scan one shard's member headers: the sample keys with an image, and their images' data offsets and sizes.

    Raises:
        FileNotFoundError: the shard does not exist.
        ValueError: the file is compressed or not a tar, or holds no image.
    """
    if not path.is_file():
        raise FileNotFoundError(f"shard {path} does not exist; check the wds: pattern (e.g. shard-{{000..009}}.tar)")
    with open(path, "rb") as f:
        magic = f.read(6)
    for sig, kind in _COMPRESSED.items():
        if magic.startswith(sig):
            raise ValueError(
                f"shard {path} is {kind}-compressed; random access needs uncompressed .tar shards: decompress it "
                f"(e.g. `{'gunzip' if kind == 'gzip' else kind + ' -d'} FILE`)"
            )
    images: dict[str, tuple[int, int]] = {}
    try:
        with tarfile.open(path, mode="r:") as tar:
            for m in tar:
                key = _image_key(m)
                if key is not None and key not in images:
                    images[key] = (m.offset_data, m.size)
    except tarfile.TarError as e:
        raise ValueError(
            f"shard {path} is not a readable tar file ({e}); write shards with tarfile or webdataset"
        ) from None
    if not images:
        raise ValueError(
            f"shard {path} holds no images (members named KEY.EXT with EXT one of {', '.join(sorted(_IMAGE_EXTS))})"
        )
    offsets, sizes = zip(*images.values())
    return list(images), np.array(offsets, dtype=np.int64), np.array(sizes, dtype=np.int64)


class WebDatasetImages(ImageSource):
    """The images of WebDataset tar shards (see the module docstring), map-style.

    Each process opens the shards it reads lazily, on first use, and keeps at most :data:`MAX_OPEN_SHARDS` open:
    DataLoader workers (forked or spawned) open their own. A read is a seek + read under a lock, so threads (the
    check of :meth:`~clmae.data.images.ImageSource.drop_unreadable`) can share a file.

    Args:
        pattern: the shards (see :func:`expand_shards`).
        mode: PIL mode of the images served (``"RGB"`` or ``"L"``).
    """

    def __init__(self, pattern: str | os.PathLike, mode: str = "RGB") -> None:
        super().__init__(mode)
        self.pattern = str(pattern)
        self.shards = [str(s) for s in expand_shards(pattern)]
        shard, offsets, sizes, self.counts = [], [], [], []
        for k, path in enumerate(self.shards):
            keys, off, size = index_shard(Path(path))
            shard.append(np.full(len(keys), k, dtype=np.int32))
            offsets.append(off)
            sizes.append(size)
            self.counts.append(len(keys))
        self.shard, self.offset, self.size = np.concatenate(shard), np.concatenate(offsets), np.concatenate(sizes)
        self._files: OrderedDict[int, BinaryIO] = OrderedDict()
        self._pid, self._lock = os.getpid(), threading.Lock()

    def raw_len(self) -> int:
        return len(self.offset)

    def _file(self, k: int) -> BinaryIO:
        f = self._files.get(k)
        if f is None:
            f = self._files[k] = open(self.shards[k], "rb")  # noqa: SIM115 (kept open for later reads)
            if len(self._files) > MAX_OPEN_SHARDS:
                self._files.popitem(last=False)[1].close()
        self._files.move_to_end(k)
        return f

    def read(self, i: int) -> bytes:
        k, offset, size = int(self.shard[i]), int(self.offset[i]), int(self.size[i])
        if self._pid != os.getpid():  # in a forked worker: its own handles and lock, never the parent's
            self.__setstate__({"_files": OrderedDict()})
        with self._lock:
            f = self._file(k)
            f.seek(offset)
            data = f.read(size)
        if len(data) != size:
            raise OSError(f"the shard ended after {len(data)} of {size} bytes (was it changed since start-up?)")
        return data

    def name(self, i: int) -> str:
        k, offset = int(self.shard[i]), int(self.offset[i])
        with tarfile.open(self.shards[k], mode="r:") as tar:
            member = next((m.name for m in tar if m.offset_data == offset), f"the member at byte {offset}")
        return f"{member} in shard {self.shards[k]}"

    def keys(self) -> list[str]:
        """The keys of the samples served, in index order (read again from the shard headers)."""
        keys = [key for path in self.shards for key in index_shard(Path(path))[0]]
        return keys if self.keep is None else [keys[i] for i in self.keep]

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_files"], state["_lock"] = OrderedDict(), None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._pid, self._lock = os.getpid(), threading.Lock()
