"""Stage Fashion-MNIST for a GPU machine: Debian's IDX files, recompressed with xz, in the ignored folder ``.fmnist``.

A GPU machine starts empty and receives the repository's working tree plus named ignored folders, 64 MiB in all.
Debian's ``.gz`` files (29.4 MiB) would not fit beside the tracked tree; the same bytes compressed with xz (25.2 MiB)
do. Every staged file is read back and compared with its source, and ``SHA256SUMS`` records each file's size and
digest for the GPU scripts' preflight. Then the total that would travel (tracked files, untracked files git does not
ignore, and the staged folder) is printed, and anything above :data:`LIMIT_MIB` is refused.

    python -m tools.stage_fmnist            # apt-get install dataset-fashion-mnist first
    # then carry .fmnist: bash benchmarks/run_gpu_fmnist.sh reads --data fmnist:.fmnist

Takes about a minute on two cores; a second call with the same files does nothing but the checks.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import lzma
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from clmae.data.fashion_mnist import DEBIAN_ROOT, read_idx

ROOT = Path(__file__).resolve().parents[1]
STAGED = ROOT / ".fmnist"
LIMIT_MIB = 60.0  # what may travel, with room under the machine's 64 MiB for the command's own files
STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
SUMS = "SHA256SUMS"
MIB = 2**20


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_sums(folder: Path) -> dict[str, tuple[int, str]]:
    """``{file name: (size, sha256)}`` of a staged folder's ``SHA256SUMS`` (empty if there is none)."""
    path = folder / SUMS
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        digest, size, name = line.split()
        out[name] = (int(size), digest)
    return out


def _stage_one(src: str, dest: str) -> str:
    """Compress one IDX file with xz (preset 9, extreme) and check that it reads back to the source's tensor."""
    original = read_idx(src)
    opener = lzma.open if src.endswith(".xz") else gzip.open
    with opener(src, "rb") as f:
        raw = f.read()
    tmp = Path(dest).with_name(f".{Path(dest).stem}.partial.xz")  # read_idx picks the decompressor by suffix
    tmp.write_bytes(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME))
    if not read_idx(tmp).equal(original):
        tmp.unlink()
        raise RuntimeError(f"{dest}: the compressed file does not read back to {src}")
    os.replace(tmp, dest)
    return dest


def travel_bytes(extra: Path) -> tuple[int, int]:
    """Bytes that travel to a GPU machine: (tracked and untracked-not-ignored files, ``extra``'s files)."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    tree = sum((ROOT / os.fsdecode(f)).stat().st_size for f in listed if f and (ROOT / os.fsdecode(f)).is_file())
    staged = sum(p.stat().st_size for p in extra.rglob("*") if p.is_file()) if extra.is_dir() else 0
    return tree, staged


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", type=Path, default=DEBIAN_ROOT, help="folder of the four IDX .gz files")
    p.add_argument("--dest", type=Path, default=STAGED, help="the staged folder (ignored by git)")
    p.add_argument("--limit-mib", type=float, default=LIMIT_MIB)
    args = p.parse_args(argv)
    sources = {}
    for stem in STEMS:
        found = [args.source / f"{stem}{ext}" for ext in (".gz", ".xz") if (args.source / f"{stem}{ext}").is_file()]
        if not found:
            print(
                f"stage_fmnist: {args.source / stem}.gz is missing; apt-get install dataset-fashion-mnist",
                file=sys.stderr,
            )
            return 2
        sources[stem] = found[0]
    args.dest.mkdir(parents=True, exist_ok=True)
    sums = read_sums(args.dest)
    todo = []
    for stem, src in sources.items():
        dest = args.dest / f"{stem}.xz"
        if not (dest.is_file() and sums.get(dest.name) == (dest.stat().st_size, sha256(dest))):
            todo.append((str(src), str(dest)))
    if todo:
        print(f"compressing {len(todo)} files with xz -9e into {args.dest} ...", flush=True)
        with ThreadPoolExecutor(min(len(todo), os.cpu_count() or 1)) as pool:  # lzma releases the GIL
            list(pool.map(_stage_one, *zip(*todo)))
    lines = []
    for stem in STEMS:
        dest = args.dest / f"{stem}.xz"
        lines.append(f"{sha256(dest)} {dest.stat().st_size} {dest.name}")
    (args.dest / SUMS).write_text("\n".join(lines) + "\n")
    tree, staged = travel_bytes(args.dest)
    total = (tree + staged) / MIB
    print(
        f"staged {args.dest}: {staged / MIB:.1f} MiB; tracked and untracked files {tree / MIB:.1f} MiB; "
        f"total that travels {total:.1f} MiB (limit {args.limit_mib:g} MiB)"
    )
    if total > args.limit_mib:
        print(
            f"stage_fmnist: {total:.1f} MiB would travel, above {args.limit_mib:g} MiB: the GPU machine takes at "
            "most 64 MiB; remove untracked files or shrink the tree",
            file=sys.stderr,
        )
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
