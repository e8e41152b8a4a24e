"""Speed of one CL-MAE iteration (MAE update + masking-module update) and of the MAE baseline.

Measures on whatever device it finds:
  1. the ceiling: the dense matrix-multiply rate of the device (bf16 on CUDA, float32 on CPU), median of repeats;
  2. per configuration: images/s of ``clmae.train_step`` (median over timed iterations after warm-up), FLOPs per
     iteration counted with ``torch.utils.flop_counter`` (forward + backward of both steps), model FLOP utilisation
     (achieved FLOP/s / ceiling) and peak memory.
It prints a table and writes JSON to ``benchmarks/results/``. Nothing here asserts on time.

    python benchmarks/bench_step.py                    # GPU: ViT-B/16 batch 256 (CL-MAE, MAE), ViT-L, FMNIST tiny
    python benchmarks/bench_step.py --cpu-smoke        # tiny models on the CPU (CI-sized)
    python benchmarks/bench_step.py --config vit_base_patch16_224:clmae:128 --compile
    python benchmarks/bench_step.py --config vit_base_patch16_224:clmae:256 --profile   # + a torch.profiler trace

``--graph`` times instead the trainer's update on device-held data (random uint8 images, augmentation on the device),
eagerly and as the static-buffer update of ``cuda_graph=true`` (captured and replayed as a CUDA graph on CUDA; eager
elsewhere), and states whether the two paths' first losses agree (bf16 tolerance); one row per path.

``--profile`` adds, per configuration, a ``torch.profiler`` record of one iteration after the timed ones: the 20
kernels with the most self time (CUDA kernels on a GPU, operators on a CPU) in ``profile_ARCH_METHOD_BATCH_*.txt``
and the Chrome trace in ``profile_*.json.gz`` (open it in Perfetto or chrome://tracing).
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import clmae
from benchmarks._results import write_result
from clmae._device import resolve_device
from clmae.train import compile_in_place

GPU_CONFIGS = [
    "vit_base_patch16_224:clmae:256",
    "vit_base_patch16_224:mae:256",
    "vit_large_patch16_224:clmae:128",
    "vit_large_patch16_224:mae:128",
    "vit_tiny_patch4_28:clmae:4096",
    "vit_tiny_patch4_28:mae:4096",
]
CPU_CONFIGS = ["vit_tiny_patch4_28:clmae:32", "vit_tiny_patch4_28:mae:32"]
CPU_TINY = dict(embed_dim=64, depth=2, num_heads=2, decoder_embed_dim=64, decoder_depth=1, decoder_num_heads=2)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_ceiling(device: torch.device, size: int, repeats: int = 10) -> float:
    """Median FLOP/s of a square matrix multiply: bf16 on CUDA, float32 on CPU."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        a @ b
        _sync(device)
        times.append(time.perf_counter() - t)
    return 2 * size**3 / statistics.median(times)


def count_flops(name: str, method: str, batch: int, model_kwargs: dict) -> int:
    """FLOPs of one full iteration (forward + backward of both steps), counted on the meta device (no compute)."""
    with torch.device("meta"):
        model = clmae.create_pretraining_model(name, method, **model_kwargs)
        c, h, w = model.in_chans, *model.img_size
        x = torch.randn(batch, c, h, w)
    counter = FlopCounterMode(display=False)
    with counter:
        model.forward_mae(x)["loss"].backward()
        if model.masker is not None:
            model.forward_masker(x, 1.0)["loss"].backward()
    return counter.get_total_flops()


def bench(
    name: str,
    method: str,
    batch: int,
    device: torch.device,
    steps: int,
    warmup: int,
    compile: bool,
    model_kwargs: dict,
    compile_mode: str | None = None,
    compile_backend: str = "inductor",
) -> dict:
    """Time ``clmae.train_step`` on random images already on the device (the model step alone, no data loading)."""
    torch.manual_seed(0)
    model = clmae.create_pretraining_model(name, method, **model_kwargs).to(device)
    if compile:  # as `clmae train --compile`
        compile_in_place(model, compile_mode, compile_backend)
    opts = clmae.build_optimizers(model, lr=1e-4)
    x = torch.randn(batch, model.in_chans, *model.img_size, device=device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):
        clmae.train_step(model, x, 1.0, *opts)
    times = []
    for _ in range(steps):
        _sync(device)
        t = time.perf_counter()
        stats = clmae.train_step(model, x, 1.0, *opts)
        _sync(device)
        times.append(time.perf_counter() - t)
    if not all(torch.isfinite(v).item() for v in stats.values()):
        raise RuntimeError(f"{name}:{method}:{batch} produced a non-finite loss")
    median = statistics.median(times)
    return {
        "arch": name,
        "method": method,
        "batch": batch,
        "compile": compile,
        "compile_mode": compile_mode,
        "compile_backend": compile_backend if compile else None,
        "model_kwargs": model_kwargs,
        "median_s": median,
        "images_per_s": batch / median,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
    }


def bench_paths(name: str, method: str, batch: int, device: torch.device, steps: int, warmup: int, model_kwargs: dict):
    """Rows of the trainer's update on device-held data: eager (``train_step``) and graphed (``cuda_graph=true``)."""
    from tools.zoo.calibrate import BF16_RTOL, first_difference, time_updates

    eager = time_updates(method, batch, str(device), steps, warmup, arch=name, model_kwargs=model_kwargs)
    graph = time_updates(method, batch, str(device), steps, warmup, graph=True, arch=name, model_kwargs=model_kwargs)
    differs = first_difference(eager["losses"], graph["losses"], BF16_RTOL)
    common = {"arch": name, "method": method, "batch": batch, "model_kwargs": model_kwargs, "peak_memory_gib": None}
    rows = []
    for path, record in (("eager", eager), ("graph", graph)):
        row = {**common, "path": path, "median_s": batch / record["images_per_s"], **record}
        rows.append(row)
    rows[1]["losses_agree"] = differs is None
    rows[1]["losses_differ_at"] = differs
    return rows


def profile(
    name: str, method: str, batch: int, device: torch.device, compile: bool, model_kwargs: dict, out: str | Path
) -> Path:
    """``torch.profiler`` record of one ``clmae.train_step`` after two warm-up iterations: writes the top-20 table
    (by self CUDA time on a GPU, self CPU time otherwise) and the gzipped Chrome trace to ``out``; returns the table's
    path."""
    torch.manual_seed(0)
    model = clmae.create_pretraining_model(name, method, **model_kwargs).to(device)
    if compile:
        compile_in_place(model)
    opts = clmae.build_optimizers(model, lr=1e-4)
    x = torch.randn(batch, model.in_chans, *model.img_size, device=device)
    for _ in range(2):
        clmae.train_step(model, x, 1.0, *opts)
    _sync(device)
    activities = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        clmae.train_step(model, x, 1.0, *opts)
        _sync(device)
    sort = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    stem = f"profile_{name}_{method}_{batch}_{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = out / f"{stem}.txt"
    head = f"{name} {method} batch {batch}, {device.type}, compile={compile}: one iteration, top 20 by {sort}\n"
    table.write_text(head + prof.key_averages().table(sort_by=sort, row_limit=20) + "\n")
    fd, raw = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(raw)
        with open(raw, "rb") as src, gzip.open(out / f"{stem}.json.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
    finally:
        os.unlink(raw)
    print(f"wrote {table} and {stem}.json.gz")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", help="ARCH:METHOD:BATCH (repeatable); default: by device")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny models on the CPU, a few iterations")
    parser.add_argument("--steps", type=int, default=None, help="timed iterations (default: 20 GPU, 3 CPU)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed iterations first (default: 5 GPU, 1 CPU)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the modules, as clmae train --compile")
    parser.add_argument("--compile-mode", default=None, help="torch.compile mode, e.g. reduce-overhead (CUDA graphs)")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend (eager: capture only)")
    parser.add_argument("--profile", action="store_true", help="also a torch.profiler record of one iteration each")
    parser.add_argument("--graph", action="store_true", help="the trainer's update: eager and cuda_graph=true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="folder for the JSON result")
    args = parser.parse_args(argv)

    device = resolve_device("cpu" if args.cpu_smoke else "auto")
    on_gpu = device.type == "cuda"
    configs = args.config or (GPU_CONFIGS if on_gpu else CPU_CONFIGS)
    model_kwargs = {} if on_gpu else CPU_TINY
    steps = args.steps or (20 if on_gpu else 3)
    warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    ceiling = matmul_ceiling(device, 8192 if on_gpu else 2048)
    device_name = torch.cuda.get_device_name(device) if on_gpu else platform.processor() or platform.machine()
    print(f"device: {device_name} ({device.type}); matmul ceiling {ceiling / 1e9:.1f} GFLOP/s")
    rows = []
    for spec in configs:
        name, method, batch = spec.split(":")
        if args.graph:
            flops = count_flops(name, method, int(batch), model_kwargs)
            for row in bench_paths(name, method, int(batch), device, steps, warmup, model_kwargs):
                row["gflop_per_image"] = flops / int(batch) / 1e9
                row["mfu"] = flops / row["median_s"] / ceiling
                rows.append(row)
                note = row.get("error") or ("" if row["path"] == "eager" else f"losses agree: {row['losses_agree']}")
                print(f"{name:24s} {method:6s} batch {int(batch):5d}  {row['path']:5s} {row['images_per_s']:10.1f} "
                      f"img/s  MFU {100 * row['mfu']:5.1f}%  {note}")  # fmt: skip
            continue
        row = bench(
            name,
            method,
            int(batch),
            device,
            steps,
            warmup,
            args.compile,
            model_kwargs,
            args.compile_mode,
            args.compile_backend,
        )
        flops = count_flops(name, method, int(batch), model_kwargs)
        row["gflop_per_image"] = flops / int(batch) / 1e9
        row["mfu"] = flops / row["median_s"] / ceiling
        rows.append(row)
        mem = f"{row['peak_memory_gib']:.1f}" if row["peak_memory_gib"] is not None else "-"
        print(
            f"{name:24s} {method:6s} batch {int(batch):5d}  {row['images_per_s']:10.1f} img/s  "
            f"{row['gflop_per_image']:7.1f} GFLOP/img  MFU {100 * row['mfu']:5.1f}%  peak {mem} GiB"
        )
        if args.profile:
            profile(name, method, int(batch), device, args.compile, model_kwargs, args.out)
    result = {
        "device": device_name,
        "device_type": device.type,
        "torch": torch.__version__,
        "matmul_ceiling_flops": ceiling,
        "steps": steps,
        "warmup": warmup,
        "amp": "bf16" if on_gpu else "fp32",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/bench_step.py", *(argv if argv is not None else sys.argv[1:])]),
        "results": rows,
    }
    write_result(result, args.out, f"step_{device.type}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
