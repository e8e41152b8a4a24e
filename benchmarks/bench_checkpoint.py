"""Cost of crash-safe checkpoints: the SHA-256 digest, an atomic save (temporary file, fsync, rename) and a verified
load, against a plain ``torch.save`` / ``torch.load`` of the same training state (model and both AdamW states).

Prints a table and writes JSON to ``benchmarks/results/``.

    python benchmarks/bench_checkpoint.py                                  # ViT-B/16 CL-MAE, the ImageNet size
    python benchmarks/bench_checkpoint.py --arch vit_tiny_patch4_28 --dir /tmp/ckpt_bench   # CPU smoke
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks._results import write_result
from clmae.models import create_pretraining_model
from clmae.train.checkpoint import load_checkpoint, save_checkpoint, state_digest
from clmae.train.step import build_optimizers


def training_state(arch: str, method: str) -> dict:
    """A checkpoint-shaped dict with filled AdamW states (one step of zero gradients)."""
    model = create_pretraining_model(arch, method)
    optimizers = [o for o in build_optimizers(model, 1e-4, 0.05, (0.9, 0.95)) if o is not None]
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    for opt in optimizers:
        opt.step()
    return {
        "model": model.state_dict(),
        "mae_optimizer": optimizers[0].state_dict(),
        "masker_optimizer": optimizers[1].state_dict() if len(optimizers) > 1 else None,
        "epoch": 1,
        "step": 1,
        "config": {"model": arch, "method": method},
    }


def _time(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="vit_base_patch16_224", help="architecture (default: vit_base_patch16_224)")
    parser.add_argument("--method", default="clmae", choices=["clmae", "mae"])
    parser.add_argument("--dir", default=None, help="folder to write the checkpoints to (default: a temporary one)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per row, the best is kept (default: 3)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="folder for the JSON result")
    args = parser.parse_args(argv)

    state = training_state(args.arch, args.method)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        plain, safe = Path(tmp) / "plain.pt", Path(tmp) / "checkpoint-0001.pt"
        rows = {
            "digest": _time(lambda: state_digest(state), args.repeats),
            "torch.save": _time(lambda: torch.save(state, plain), args.repeats),
            "save_checkpoint (digest, fsync, rename)": _time(lambda: save_checkpoint(state, safe), args.repeats),
            "torch.load (weights_only)": _time(lambda: torch.load(plain, weights_only=True), args.repeats),
            "load_checkpoint (verified)": _time(lambda: load_checkpoint(safe), args.repeats),
        }
        size = safe.stat().st_size
    print(f"{args.arch} {args.method}: checkpoint {size / 1e9:.2f} GB")
    for what, seconds in rows.items():
        print(f"  {what:42s} {seconds:7.2f} s")
    result = {
        "what": "checkpoint save/load with and without the SHA-256 digest (best of repeats)",
        "arch": args.arch,
        "method": args.method,
        "checkpoint_bytes": size,
        "seconds": rows,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(
            ["python", "benchmarks/bench_checkpoint.py", *(argv if argv is not None else sys.argv[1:])]
        ),
    }
    write_result(result, args.out, f"checkpoint_{args.arch}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
