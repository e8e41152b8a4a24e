"""Throughput of the trainer's input pipeline on an ImageFolder of JPEGs (decode + MAE's augmentation).

Generates an ImageNet-like folder (JPEG quality 90, sizes around 500x375) if it does not exist, then reads it as
``clmae train`` does (``clmae.train.batches.EpochBatches``: the same data set, sampler and ``DataLoader`` settings)
and reports images/s (median over batches after warm-up, each on ``--device``). Two paths:

* ``--decode pil`` (the trainer's default so far): PIL decodes and augments every image in the workers;
* ``--decode device``: the workers only read the encoded bytes (``clmae.data.transforms.decode.EncodedImages``) and the
  batch is decoded (nvJPEG on CUDA) and augmented on ``--device`` (``BatchDecoder``).

Compare it with ``bench_step.py``'s model-step rate: the trainer can only reach the slower of the two. Prints a
table and writes JSON to ``benchmarks/results/``.

    python benchmarks/bench_data.py --workers 16 --images 8192                                  # GPU machine, PIL
    python benchmarks/bench_data.py --workers 16 --images 8192 --decode device --device cuda    # GPU machine, nvJPEG
    python benchmarks/bench_data.py --workers 0 --images 64 --batches 2                         # CPU smoke
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks._results import write_result
from clmae.data import GlobalBatchSampler, build_pretraining_data
from clmae.train.batches import EpochBatches


def make_jpeg_folder(root: Path, images: int, classes: int = 8, seed: int = 0) -> None:
    """Smooth random colour images of ImageNet-like sizes, saved as JPEG in ``root/class_k/``."""
    g = torch.Generator().manual_seed(seed)
    for i in range(images):
        folder = root / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        w, h = (500, 375) if i % 3 else (375, 500)
        coarse = torch.rand(3, h // 25, w // 25, generator=g)  # upsampled noise: compresses like a photo
        img = torch.nn.functional.interpolate(coarse[None], size=(h, w), mode="bicubic", align_corners=False)[0]
        arr = (img.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(folder / f"img_{i:06d}.jpg", quality=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="/tmp/clmae_bench_jpegs", help="JPEG folder (made if missing)")
    parser.add_argument("--images", type=int, default=8192, help="images to generate (default: 8192)")
    parser.add_argument("--batch-size", type=int, default=256, help="per-process batch (default: 256)")
    parser.add_argument("--workers", type=int, default=min(16, os.cpu_count() or 1), help="DataLoader workers")
    parser.add_argument("--batches", type=int, default=20, help="timed batches (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches first (default: 3)")
    parser.add_argument("--decode", choices=("pil", "device"), default="pil", help="PIL in the workers, or batched")
    parser.add_argument("--device", default=None, help="where batches are served: cpu or cuda (default: cuda if there)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="folder for the JSON result")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here; use --device cpu")

    root = Path(args.root)
    if not root.exists():
        t = time.perf_counter()
        make_jpeg_folder(root, args.images)
        print(f"generated {args.images} JPEGs in {root} ({time.perf_counter() - t:.0f} s)")
    data = build_pretraining_data(str(root), 3, 224)
    # The trainer's batches: the same sampler, DataLoader settings and (--decode device) batched decoder.
    sampler = GlobalBatchSampler(data.dataset, args.batch_size, 1, 1, 0, seed=0)
    batches = EpochBatches(data, sampler, device, 224, 3, decode=args.decode, num_workers=args.workers)
    decoder = batches.decoder
    needed = args.warmup + args.batches
    times, seen, epoch = [], 0, 0
    while seen < needed:
        t = time.perf_counter()
        for _ in batches.epoch(epoch):
            if device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            if seen >= args.warmup:
                times.append(now - t)
            t, seen = now, seen + 1
            if seen >= needed:
                break
        epoch += 1
    rate = args.batch_size / statistics.median(times)
    where = "PIL in the workers" if decoder is None else f"batched on {device.type}"
    print(f"{'decode':8s} {'device':7s} {'workers':>7s} {'batch':>5s} {'images/s':>9s}")
    print(f"{args.decode:8s} {device.type if decoder else '-':7s} {args.workers:7d} {args.batch_size:5d} {rate:9.0f}")
    print(f"({len(data.dataset)} JPEGs, decoded {where}; median of {len(times)} batches)")
    what = {
        "pil": "trainer input pipeline: ImageFolder JPEG -> PIL decode -> RandomResizedCrop(224) + flip -> tensor",
        "device": "ImageFolder JPEG bytes (workers) -> batched decode + RandomResizedCrop(224) + flip on the device",
    }[args.decode]
    result = {
        "what": what,
        "decode": args.decode,
        "device": device.type if decoder is not None else None,
        "images_per_s": rate,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "cpu_count": os.cpu_count(),
        "dataset_images": len(data.dataset),
        "batches_timed": len(times),
        "cuda": torch.cuda.is_available(),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/bench_data.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    write_result(result, args.out, "data")
    return 0


if __name__ == "__main__":
    sys.exit(main())
