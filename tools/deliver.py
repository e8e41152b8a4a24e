"""Hand results back as each stage ends, in a form that survives the call being cut at any moment.

A GPU machine returns only the files under its output folder, and only a few of them: at most 8 files of at most
16 MiB, at most 2 folders deep. A call cut at its time limit is killed outright (SIGKILL: no trap, no ``finally``),
so whatever is to come back must already be there. :func:`deliver` packs a results folder into one ``.tar.gz`` and
puts it in place with an atomic rename: at every moment the returned archive is a complete, earlier or newer, copy.
Files are added by priority until :data:`BUDGET` bytes, so the archive stays within the return limit;
:func:`deliver_parts` splits one large file into numbered parts of at most :data:`PART_BYTES`.

    python -m tools.deliver SRC DEST/results.tar.gz --stage NAME [--preset zoo]   # from a shell script
"""

from __future__ import annotations

import argparse
import fnmatch
import io
import os
import sys
import tarfile
from collections.abc import Iterable
from pathlib import Path

PART_BYTES = 15_000_000  # every returned file stays under the 16 MiB limit with room to spare
BUDGET = 14_000_000  # bytes of files packed into one archive (pictures and JSON hardly compress)
# Checkpoints and weight files travel by deliver_parts, or not at all (other safetensors, e.g. mask records, do).
NEVER = ("*.pt", "*model.safetensors", "*pretraining.safetensors", "*.tmp", "*.part-*")
# What a results folder of the zoo pipeline hands back: ``(exclude, low)`` patterns. Never: checkpoints, exported and
# float16 weights (seed 0's travel apart), feature caches, TensorBoard; last: mask records, pictures of later seeds.
PRESETS = {
    "zoo": (
        ("*.pt", "features/*", "*/tensorboard/*", "*/published/*", "*/export/*", "calibration/*/*.log"),
        ("runs/*/masks/*", "runs/*/vis/*", "runs/*_s[1-9]*/*.png"),
    ),
    "gpu": ((), ("profile_*.json.gz",)),  # run_gpu.sh: the Chrome traces go first
    "all": ((), ()),
}


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def collect(src: Path, low: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[Path]:
    """The files under ``src`` to pack, most valuable first: everything but ``exclude`` and :data:`NEVER`, with the
    files matching a ``low`` pattern (relative paths, ``fnmatch``) at the end."""
    skip = (*NEVER, *exclude)
    files = sorted(p for p in src.rglob("*") if p.is_file() and not p.is_symlink())
    files = [p for p in files if not any(fnmatch.fnmatch(str(p.relative_to(src)), pat) for pat in skip)]
    low = tuple(low)
    return sorted(files, key=lambda p: any(fnmatch.fnmatch(str(p.relative_to(src)), pat) for pat in low))


def deliver(
    src: str | os.PathLike,
    archive: str | os.PathLike,
    *,
    stage: str = "",
    low: Iterable[str] = (),
    exclude: Iterable[str] = (),
    budget: int = BUDGET,
) -> list[str]:
    """Pack ``src`` into ``archive`` (``.tar.gz``), replacing it atomically; files past ``budget`` bytes are left out
    (listed in ``LEFT_OUT.txt`` inside the archive, lowest priority first to go).

    Returns:
        The relative paths left out.
    """
    src, archive = Path(src), Path(archive)
    archive.parent.mkdir(parents=True, exist_ok=True)
    packed, left, total = [], [], 0
    for p in collect(src, low, exclude):
        size = p.stat().st_size
        if total + size > budget:
            left.append(str(p.relative_to(src)))
            continue
        packed.append(p)
        total += size
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=6) as tar:
        for p in packed:
            try:
                tar.add(p, arcname=str(p.relative_to(src)))
            except FileNotFoundError:  # a job still running removed it (a rotated checkpoint log): skip
                continue
        if left:
            note = ("left out to stay within the return limit:\n" + "\n".join(left) + "\n").encode()
            info = tarfile.TarInfo("LEFT_OUT.txt")
            info.size = len(note)
            tar.addfile(info, io.BytesIO(note))
    atomic_write(archive, buf.getvalue())
    print(
        f"delivered: {stage or src} -> {archive} ({len(buf.getvalue()) / 1e6:.1f} MB, {len(packed)} files"
        + (f", {len(left)} left out" if left else "")
        + ")",
        flush=True,
    )
    return left


def deliver_parts(path: str | os.PathLike, dest_prefix: str | os.PathLike, part_bytes: int = PART_BYTES) -> list[Path]:
    """Copy ``path`` as ``DEST_PREFIX.part-00``, ``-01``, ... of at most ``part_bytes`` each, each written atomically
    (``cat DEST_PREFIX.part-* > FILE`` joins them; the caller records the whole file's sha256). Returns the parts."""
    data = Path(path).read_bytes()
    dest = Path(dest_prefix)
    dest.parent.mkdir(parents=True, exist_ok=True)
    parts = []
    for i, start in enumerate(range(0, max(len(data), 1), part_bytes)):
        part = dest.with_name(f"{dest.name}.part-{i:02d}")
        atomic_write(part, data[start : start + part_bytes])
        parts.append(part)
    return parts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("src", help="the results folder")
    p.add_argument("archive", help="the .tar.gz to write (replaced atomically)")
    p.add_argument("--stage", default="", help="the stage that just ended, for the log line")
    p.add_argument("--preset", choices=sorted(PRESETS), default="all", help="which files of SRC, in which order")
    args = p.parse_args(argv)
    if not Path(args.src).is_dir():
        print(f"deliver: {args.src} is not a folder; nothing delivered", file=sys.stderr)
        return 2
    exclude, low = PRESETS[args.preset]
    deliver(args.src, args.archive, stage=args.stage, low=low, exclude=exclude)
    return 0


if __name__ == "__main__":
    sys.exit(main())
