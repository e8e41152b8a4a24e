"""Check a machine before a GPU script spends its one call: device, data, versions, disk. Seconds, not minutes.

Prints one ``ok`` line per check; the first failure prints one line naming what is missing and what to do, and
exits 3. The GPU scripts run it first, so a machine without CUDA, without the staged data or without disk space
stops within seconds instead of failing half-way through the call.

    python -m tools.preflight --cuda --data .fmnist --disk /tmp:20
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import platform
import shutil
import subprocess
import sys
from pathlib import Path

from tools.stage_fmnist import STEMS, SUMS, read_sums


class Missing(Exception):
    """What the machine lacks, in one line."""


def check_versions() -> str:
    found = [f"python {platform.python_version()}"]
    for name in ("torch", "torchvision", "timm"):
        try:
            found.append(f"{name} {importlib.import_module(name).__version__}")
        except Exception as e:  # any import failure means the package is unusable here
            raise Missing(f"{name} cannot be imported ({type(e).__name__}: {e}); install it") from None
    return ", ".join(found)


def check_cuda(min_gib: float) -> str:
    import torch

    if not torch.cuda.is_available():
        raise Missing(
            f"no CUDA device: torch {torch.__version__} sees none (run on the GPU machine, or SMOKE=1 for the CPU "
            "rehearsal)"
        )
    props = torch.cuda.get_device_properties(0)
    gib = props.total_memory / 2**30
    if gib < min_gib:
        raise Missing(f"{props.name} has {gib:.0f} GiB, under the {min_gib:g} GiB this script needs")
    free, _ = torch.cuda.mem_get_info(0)
    mode = "?"
    try:
        q = ["nvidia-smi", "--query-gpu=compute_mode", "--format=csv,noheader", "-i", "0"]
        mode = subprocess.run(q, capture_output=True, text=True, timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        pass
    if mode.lower().startswith("prohibited"):
        raise Missing(f"{props.name} is in compute mode {mode}: no process may use it")
    if mode.lower().startswith("exclusive"):  # the comparison runs many processes on the one device
        raise Missing(f"{props.name} is in compute mode {mode}: this script runs several processes on it")
    return (
        f"{props.name}, {gib:.0f} GiB ({free / 2**30:.0f} free), compute capability {props.major}.{props.minor}, "
        f"compute mode {mode}, {torch.cuda.device_count()} device(s), CUDA {torch.version.cuda}"
    )


def check_data(folder: Path) -> str:
    sums = read_sums(folder)
    if not sums:
        raise Missing(
            f"the staged Fashion-MNIST is missing: no {folder / SUMS}; run `python -m tools.stage_fmnist` on the "
            f"staging machine and carry {folder}"
        )
    total = 0
    for stem in STEMS:
        name = f"{stem}.xz"
        path = folder / name
        if name not in sums or not path.is_file():
            raise Missing(f"the staged Fashion-MNIST is incomplete: {path} is missing; stage it again")
        size, digest = sums[name]
        if path.stat().st_size != size or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise Missing(f"{path} is damaged or truncated (size or sha256 differs from {SUMS}); stage it again")
        total += size
    return f"{folder}: the four Fashion-MNIST files, {total / 2**20:.1f} MiB, sha256 as staged"


def check_disk(path: str, need_gib: float) -> str:
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free / 2**30
    if free < need_gib:
        raise Missing(f"{folder} has {free:.1f} GiB free, under the {need_gib:g} GiB needed; free some space")
    return f"{folder}: {free:.0f} GiB free (need {need_gib:g})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cuda", action="store_true", help="require a CUDA device")
    p.add_argument("--min-gib", type=float, default=20.0, help="--cuda: the least device memory")
    p.add_argument("--data", type=Path, default=None, help="a folder staged by python -m tools.stage_fmnist")
    p.add_argument("--disk", action="append", default=[], help="PATH:GIB, free space needed there (repeatable)")
    args = p.parse_args(argv)
    checks = [("versions", check_versions)]
    if args.cuda:
        checks.append(("device", lambda: check_cuda(args.min_gib)))
    if args.data is not None:
        checks.append(("data", lambda: check_data(args.data)))
    for spec in args.disk:
        path, _, gib = spec.rpartition(":")
        checks.append(("disk", lambda path=path, gib=gib: check_disk(path, float(gib))))
    for name, check in checks:
        try:
            print(f"preflight ok: {name}: {check()}", flush=True)
        except Missing as e:
            print(f"preflight FAILED: {name}: {e}", flush=True)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
