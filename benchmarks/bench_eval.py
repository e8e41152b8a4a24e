"""Cost of evaluation on Fashion-MNIST: feature extraction, both kNN votes, the cached linear probe and fine-tuning
steps of a ViT-T/4 28 px encoder (the bundled CL-MAE weights by default).

Prints a table and writes JSON to ``benchmarks/results/``. Every row goes through clmae's public evaluation API
(``features_for``, ``knn_metrics``, ``linear_probe_cached``, ``run_eval``), so the same script times any version of
``clmae.eval`` (run it from that checkout: it imports the ``clmae`` next to it).

    python benchmarks/bench_eval.py --device cuda                                 # all 60k + 10k images, 90 epochs
    python benchmarks/bench_eval.py --device cpu --train-limit 5000 --val-limit 1000 --linear-epochs 5   # CPU
"""

from __future__ import annotations

import argparse
import inspect
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from benchmarks._results import write_result
from clmae.eval import LinearProbeConfig, features_for, linear_probe_cached, resolve_data, resolve_model, run_eval
from clmae.eval.knn import knn_metrics


def _timed(fn, device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit_t_fmnist", help="--model of clmae eval (default: vit_t_fmnist)")
    parser.add_argument("--data", default="fmnist", help="--data of clmae eval (default: fmnist)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default: cpu)")
    parser.add_argument("--train-limit", type=int, default=None, help="training images (default: all)")
    parser.add_argument("--val-limit", type=int, default=None, help="validation images (default: all)")
    parser.add_argument("--extract-batch-size", type=int, default=1000, help="as the zoo (default: 1000)")
    parser.add_argument("--linear-epochs", type=int, default=90, help="cached linear probe epochs (default: 90)")
    parser.add_argument("--finetune-steps", type=int, default=20, help="fine-tuning steps of 256 (default: 20)")
    parser.add_argument("--finetune-val", type=int, default=1000, help="images the fine-tuned net is scored on")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="folder for the JSON result")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    model, data = resolve_model(args.model), resolve_data(args.data)
    encoder = model.encoder()
    feats, t_extract = _timed(
        lambda: features_for(
            model,
            data,
            batch_size=args.extract_batch_size,
            device=str(device),
            train_limit=args.train_limit,
            val_limit=args.val_limit,
            use_cache=False,
            encoder=encoder,
        ),
        device,
    )
    n_train, n_val = feats.train_labels.numel(), feats.val_labels.numel()
    knn_kw = {"device": str(device)} if "device" in inspect.signature(knn_metrics).parameters else {}
    frozen = (feats.train["avg"], feats.train_labels, feats.val["avg"], feats.val_labels, data.num_classes)
    knn, t_knn = _timed(lambda: knn_metrics(*frozen, **knn_kw), device)
    cfg = LinearProbeConfig(mode="cached", epochs=args.linear_epochs, warmup_epochs=max(1, args.linear_epochs // 9))
    probe = (feats.train["cls"], feats.train_labels, feats.val["cls"], feats.val_labels, data.num_classes)
    linear, t_linear = _timed(lambda: linear_probe_cached(*probe, cfg, str(device)), device)
    steps_per_epoch = max(n_train, 256) // 256
    ft_opts = {
        "device": str(device),
        "epochs": 1,
        "warmup_epochs": 0,
        "batch_size": 256,
        "train_limit": args.finetune_steps * 256,
        "val_limit": args.finetune_val,
        "cache": False,
    }
    ft, t_ft = _timed(lambda: run_eval("finetune", args.model, args.data, ft_opts), device)

    rows = {
        f"extract features ({n_train} + {n_val} images)": t_extract,
        "kNN, both votes": t_knn,
        f"linear probe, cached, {args.linear_epochs} epochs ({steps_per_epoch} steps each)": t_linear,
        f"fine-tune, {args.finetune_steps} steps of 256 + scoring {args.finetune_val}": t_ft,
    }
    print(f"{args.model} on {args.data}, {device}")
    for what, seconds in rows.items():
        print(f"  {what:60s} {seconds:8.2f} s")
    print(
        f"  kNN top1 {knn['reference']['top1']:.4f} / {knn['weighted']['top1']:.4f}, linear top1 {linear['top1']:.4f}"
        f", fine-tune top1 {ft.metrics['top1']:.4f}"
    )
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
    result = {
        "what": "clmae eval on Fashion-MNIST: extraction, kNN, cached linear probe, fine-tuning steps (seconds)",
        "model": args.model,
        "data": args.data,
        "device": str(device),
        "train_images": n_train,
        "val_images": n_val,
        "seconds": rows,
        "metrics": {
            "knn_reference_top1": knn["reference"]["top1"],
            "knn_weighted_top1": knn["weighted"]["top1"],
            "linear_top1": linear["top1"],
            "linear_train_loss": linear["train_loss"],
            "finetune_top1": ft.metrics["top1"],
        },
        "clmae": str(Path(inspect.getfile(features_for)).parents[1]),
        "machine": machine,
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/bench_eval.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    write_result(result, args.out, f"eval_{device.type}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
