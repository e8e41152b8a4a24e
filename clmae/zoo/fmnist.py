"""Train, evaluate and package the zoo's Fashion-MNIST weights: CL-MAE and the MAE baseline, several seeds each.

The published weights and every number in ``weights/*fmnist*/`` and MODEL_CARD.md come from
``bash benchmarks/run_gpu_fmnist.sh`` on one H100, where ``--epochs auto`` chose 9 epochs; the same schedule again::

    python -m clmae.zoo.fmnist --data fmnist --out runs/fmnist_zoo --seeds 0 1 2 --epochs 9 --device cuda

Steps (each a plain ``clmae`` command, run as concurrent processes on one device):

1. ``--epochs auto``: time 60 training iterations of each method with every run going at once, and pick the
   number of epochs that fits ``--train-seconds``.
2. ``clmae train --recipe clmae_fmnist_tiny`` for each (method, seed): same architecture (ViT-T/4, 28 px), data
   (the 60,000 training images, no augmentation besides the masks), batch, schedule and epochs for both methods.
3. Every run's weights are stored in float16 (the published format: half the size) and those exact files are
   evaluated on the 10,000 test images with ``clmae eval``: both kNN protocols and the linear probe (features
   cached), and optionally a short fine-tuning; beside them raw pixels and randomly initialised encoders.
4. ``summary.json`` / ``summary.md`` (mean and std over seeds) and ``curriculum.png`` (the learned masks of the
   first CL-MAE run at several points of its curriculum, and its loss curves).

Nothing here is specific to a GPU: ``--device cpu --data fmnist-sample --epochs 2 --linear-epochs 2`` runs the same
steps on the bundled 1,000 images in minutes. ``python -m clmae.zoo.publish OUT`` then packages the first seed of each
method as the bundled weights.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from clmae.models import METHOD_TITLES, METHODS

ARCH = "vit_tiny_patch4_28"


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    root = str(Path(__file__).resolve().parents[2])  # the jobs import this clmae, installed or not
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
    return env


def _train_images(spec: str) -> int:
    """How many images the training data spec holds."""
    from clmae.data import build_pretraining_data

    return len(build_pretraining_data(spec, 1, 28).dataset)


def _clmae(*args: str) -> list[str]:
    return [sys.executable, "-m", "clmae", *args]


def _stop(proc: subprocess.Popen) -> None:
    """End a job and everything it started (its process group): SIGTERM, then SIGKILL after 10 s."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue


def _run_all(jobs: list[tuple[str, list[str], Path]], parallel: int, deadline: float) -> dict[str, int | None]:
    """Run ``(name, command, log file)`` jobs, ``parallel`` at a time; stop what is left at ``deadline``.

    Each job runs in its own process group, so stopping it (at the deadline, or when this process is interrupted)
    also stops its data-loading workers.

    Returns each job's exit status (``None``: stopped at the deadline or never started).
    """
    pending, running, status = list(jobs), {}, {}
    try:
        while pending or running:
            while pending and len(running) < parallel and time.time() < deadline:
                name, cmd, log = pending.pop(0)
                log.parent.mkdir(parents=True, exist_ok=True)
                handle = log.open("w")
                proc = subprocess.Popen(
                    cmd, stdout=handle, stderr=subprocess.STDOUT, env=_env(), start_new_session=True
                )
                running[name] = (proc, handle)
                print(f"  started {name}: {' '.join(cmd[2:])}", flush=True)
            for name, (proc, handle) in list(running.items()):
                if proc.poll() is not None:
                    handle.close()
                    status[name] = proc.returncode
                    del running[name]
                    word = "done" if proc.returncode == 0 else "FAILED"
                    print(f"  {word} {name} (exit {proc.returncode})", flush=True)
            if time.time() > deadline:
                for name in list(running):
                    print(f"  stopped {name} at the deadline", flush=True)
                    status[name] = None
                status.update({name: None for name, _, _ in pending})
                pending = []
                break
            time.sleep(0.5)
    finally:
        for proc, handle in running.values():
            _stop(proc)
            handle.close()
    return status


# ---------------------------------------------------------------------------------------------------------------
# 1. calibration
# ---------------------------------------------------------------------------------------------------------------


def calibrate_child(method: str, batch: int, device: str, steps: int, out: Path) -> None:
    """Time ``steps`` training iterations (after 15 warm-up ones) on random images; write images/s to ``out``."""
    import torch

    from clmae.models import create_pretraining_model
    from clmae.train import build_optimizers, train_step

    torch.manual_seed(0)
    dev = torch.device(device)
    model = create_pretraining_model(ARCH, method).to(dev).train()
    mae_opt, masker_opt = build_optimizers(model, 1e-4)
    x = torch.randn(batch, 1, 28, 28, device=dev)
    for i in range(15 + steps):
        if i == 15:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        train_step(model, x, 1.0 - 2.0 * (i % 2), mae_opt, masker_opt)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    out.write_text(
        json.dumps(
            {
                "method": method,
                "batch": batch,
                "steps": steps,
                "seconds": seconds,
                "images_per_s": steps * batch / seconds,
            }
        )
    )


def calibrate(args: argparse.Namespace, out: Path, deadline: float) -> dict[str, Any]:
    """Images/s of each method while every run of the plan trains at once."""
    jobs = []
    for old in (out / "calibration").glob("*.json"):  # never mix in an earlier call's timings
        old.unlink()
    for method in METHODS:
        for seed in args.seeds:
            f = out / "calibration" / f"{method}_s{seed}.json"
            cmd = [
                sys.executable,
                "-m",
                "clmae.zoo.fmnist",
                "--calibrate-child",
                method,
                "--batch-size",
                str(args.batch_size),
                "--device",
                args.device,
                "--out",
                str(f),
            ]
            jobs.append((f"calibrate {method} s{seed}", cmd, f.with_suffix(".log")))
    _run_all(jobs, len(jobs), deadline)
    rates: dict[str, float] = {}
    for method in METHODS:
        found = [json.loads(p.read_text()) for p in (out / "calibration").glob(f"{method}_s*.json")]
        if not found:
            raise RuntimeError(f"calibration of {method} failed: see {out / 'calibration'}/*.log")
        rates[method] = min(r["images_per_s"] for r in found)
    return rates


# ---------------------------------------------------------------------------------------------------------------
# 2. training
# ---------------------------------------------------------------------------------------------------------------


def run_throughput(run: Path) -> dict[str, float]:
    """A finished run's training seconds, images/s (all images over all epoch time) and last MAE loss, from its
    ``metrics.jsonl`` and exported ``train_config.json``."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    epochs = [r for r in records if r.get("type") == "epoch"]
    config = json.loads((run / "export" / "train_config.json").read_text())
    seconds = sum(r["seconds"] for r in epochs)
    images = epochs[-1]["step"] * config["batch_size"] * config["accum_iter"]
    return {"seconds": seconds, "images_per_s": images / seconds, "final_mae_loss": epochs[-1]["mae_loss"]}


def train_command(args: argparse.Namespace, method: str, seed: int, epochs: int, run: Path) -> list[str]:
    """The ``clmae train`` command of one run."""
    return _clmae(
        "train",
        "--recipe",
        "clmae_fmnist_tiny",
        "--method",
        method,
        "--data",
        args.data,
        "--out",
        str(run),
        f"seed={seed}",
        f"epochs={epochs}",
        f"warmup_epochs={max(1, epochs // 10)}",
        f"batch_size={args.batch_size}",
        f"base_lr={args.base_lr}",
        f"num_workers={args.workers}",
        f"device={args.device}",
        "log_every=50",
        "vis_every=1",
        f"save_every={max(1, epochs // 4)}",
        "keep_checkpoints=1",
        "progress=false",
    )


# ---------------------------------------------------------------------------------------------------------------
# 3. publishing format and evaluation
# ---------------------------------------------------------------------------------------------------------------


def store_half(run: Path, method: str, epochs: int, command: str) -> Path:
    """``run/published``: the run's exported weights stored in float16, with the model card's facts."""
    import torch

    from clmae.hub import load_pretraining_model, save_pretrained

    model = load_pretraining_model(run / "export")
    title = METHOD_TITLES[method]
    metadata = {
        "license": "apache-2.0",
        "datasets": ["fashion_mnist"],
        "method": method,
        "description": f"{title} pretraining of `{ARCH}` for {epochs} epochs on the 60,000 Fashion-MNIST training "
        f"images with `clmae train` (recipe `clmae_fmnist_tiny`). Reproduce: `{command}`.",
    }
    return save_pretrained(model, run / "published", metadata=metadata, dtype=torch.float16)


def eval_jobs(args: argparse.Namespace, models: dict[str, str], out: Path, with_finetune: bool) -> list:
    """``clmae eval`` jobs: kNN and linear probe (and fine-tuning) of every model."""
    common = [f"device={args.device}", f"cache_dir={out / 'features'}", "extract_batch_size=1000"]
    if args.limit:
        common += [f"train_limit={args.limit}", f"val_limit={args.limit // 4}"]
    jobs = []
    for name, spec in models.items():
        extra = [f"init_seed={name.rsplit('_s', 1)[1]}"] if name.startswith("random") else []
        knn = _clmae(
            "eval",
            "knn",
            "--model",
            spec,
            "--data",
            args.eval_data,
            "--out",
            str(out / "eval" / f"{name}.knn.json"),
            *common,
            *extra,
        )
        linear = _clmae(
            "eval",
            "linear",
            "--model",
            spec,
            "--data",
            args.eval_data,
            "--out",
            str(out / "eval" / f"{name}.linear.json"),
            "mode=cached",
            f"epochs={args.linear_epochs}",
            f"warmup_epochs={max(1, args.linear_epochs // 9)}",
            *common,
            *extra,
        )
        jobs += [
            (f"knn {name}", knn, out / "logs" / f"{name}.knn.log"),
            (f"linear {name}", linear, out / "logs" / f"{name}.linear.log"),
        ]
        if with_finetune and name != "raw-pixels":
            ft = _clmae(
                "eval",
                "finetune",
                "--model",
                spec,
                "--data",
                args.eval_data,
                "--out",
                str(out / "eval" / f"{name}.finetune.json"),
                f"epochs={args.finetune_epochs}",
                f"warmup_epochs={max(1, args.finetune_epochs // 10)}",
                "batch_size=256",
                "base_lr=1e-3",
                f"workers={args.workers}",
                "cache=false",
                *common,
                *extra,
            )
            jobs.append((f"finetune {name}", ft, out / "logs" / f"{name}.finetune.log"))
    return jobs


# ---------------------------------------------------------------------------------------------------------------
# 4. summary and the curriculum figure
# ---------------------------------------------------------------------------------------------------------------


def _metric(path: Path, *keys: str) -> float | None:
    if not path.is_file():
        return None
    value: Any = json.loads(path.read_text())["metrics"]
    for k in keys:
        value = value.get(k) if isinstance(value, dict) else None
    return value


COLUMNS = [
    ("knn_reference", "knn", ("reference", "top1"), "kNN k=5 (CL-MAE's)"),
    ("knn_weighted", "knn", ("weighted", "top1"), "kNN k=20 weighted"),
    ("linear", "linear", ("top1",), "linear probe"),
    ("finetune", "finetune", ("top1",), "fine-tuning"),
]


def summarize(out: Path, groups: dict[str, list[str]], info: dict[str, Any]) -> dict[str, Any]:
    """Per group of models (a method's seeds): every metric per seed, mean and std; as JSON and a markdown table."""
    rows: dict[str, Any] = {}
    for group, names in groups.items():
        row: dict[str, Any] = {"models": names}
        for key, protocol, path, _ in COLUMNS:
            found = {n: _metric(out / "eval" / f"{n}.{protocol}.json", *path) for n in names}
            by_model = {n: v for n, v in found.items() if v is not None}  # a failed evaluation is left out
            values = list(by_model.values())
            if values:
                row[key] = {
                    "by_model": by_model,
                    "values": values,
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                }
        rows[group] = row
    summary = {**info, "results": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    head = "| encoder | " + " | ".join(c[3] for c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for group, row in rows.items():
        cells = []
        for key, *_ in COLUMNS:
            m = row.get(key)
            if m is None:
                cells.append("-")
            elif len(m["values"]) > 1:
                cells.append(f"{100 * m['mean']:.2f} ± {100 * m['std']:.2f} (n={len(m['values'])})")
            else:
                cells.append(f"{100 * m['mean']:.2f}")
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return summary


def curriculum_figure(run: Path, path: Path, points: int = 5) -> Path:
    """Stack the run's ``vis/masks-EEEE.png`` at ``points`` epochs spread over training (partner -> neutral ->
    adversary), each labelled with its epoch and lambda_cl, above the run's loss/lambda history plot."""
    from PIL import Image, ImageDraw

    from clmae.curriculum import curriculum_factor, curriculum_phase

    pictures = sorted((run / "vis").glob("masks-*.png"))
    if not pictures:
        raise FileNotFoundError(f"{run / 'vis'} holds no masks-*.png")
    epochs = int(json.loads((run / "export" / "train_config.json").read_text())["epochs"])
    by_epoch = {int(p.stem.split("-")[1]): p for p in pictures}
    wanted = sorted({round(1 + i * (epochs - 1) / (points - 1)) for i in range(points)} & set(by_epoch))
    panels = []
    for e in wanted:
        lam = curriculum_factor(e - 1, epochs)
        img = Image.open(by_epoch[e]).convert("RGB")
        label = Image.new("RGB", (img.width, 18), "white")
        ImageDraw.Draw(label).text(
            (4, 3), f"after epoch {e}/{epochs}: lambda_cl {lam:+.2f} ({curriculum_phase(lam)})", fill=(0, 0, 0)
        )
        panels += [label, img]
    history = run / "history.png"
    if history.is_file():
        panels.append(Image.open(history).convert("RGB"))
    width = max(p.width for p in panels)
    figure = Image.new("RGB", (width, sum(p.height for p in panels)), "white")
    y = 0
    for p in panels:
        figure.paste(p, (0, y))
        y += p.height
    figure.save(path)
    return path


# ---------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="fmnist", help="training data spec (fmnist: Debian's files; fmnist:FOLDER)")
    p.add_argument("--eval-data", default=None, help="evaluation data spec (default: --data)")
    p.add_argument("--out", default="runs/fmnist_zoo")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", default="auto", help="epochs of every run, or 'auto' (fit --train-seconds)")
    p.add_argument("--train-seconds", type=float, default=300.0, help="--epochs auto: time for the training step")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--base-lr", type=float, default=1e-3, help="AdamW rate at batch 256 (peak = base_lr*batch/256)")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes per run")
    p.add_argument("--device", default="cuda")
    p.add_argument("--linear-epochs", type=int, default=90)
    p.add_argument("--finetune-epochs", type=int, default=0, help="0: no fine-tuning")
    p.add_argument("--parallel-eval", type=int, default=6)
    p.add_argument("--deadline", type=float, default=None, help="stop everything this many seconds after start")
    p.add_argument("--limit", type=int, default=None, help="evaluate on this many training images (smoke tests)")
    p.add_argument("--calibrate-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.calibrate_child:
        out.parent.mkdir(parents=True, exist_ok=True)
        calibrate_child(args.calibrate_child, args.batch_size, args.device, 60, out)
        return 0
    args.eval_data = args.eval_data or args.data
    if (out / "runs").exists():
        p.error(f"{out} already holds runs; choose a new --out (results of different calls are never mixed)")
    start = time.time()
    deadline = start + (args.deadline or 1e9)
    out.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "arch": ARCH,
        "seeds": args.seeds,
        "batch_size": args.batch_size,
        "base_lr": args.base_lr,
        "data": args.data,
        "device": args.device,
        "linear_epochs": args.linear_epochs,
        "finetune_epochs": args.finetune_epochs,
    }
    if args.device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
        info["torch"] = torch.__version__

    # 1. epochs
    if args.epochs == "auto":
        print("calibrating: every run's training iteration, all at once", flush=True)
        rates = calibrate(args, out, deadline)
        epochs = int(args.train_seconds * min(rates.values()) / _train_images(args.data) * 0.7)
        epochs = max(2, min(args.max_epochs, epochs))
        info["calibration_images_per_s"] = rates
        print(f"  images/s with {2 * len(args.seeds)} runs at once: {rates}; epochs: {epochs}", flush=True)
    else:
        epochs = int(args.epochs)
    info["epochs"] = epochs

    # 2. training
    t0 = time.time()
    runs = {f"{m}_s{s}": (m, s, out / "runs" / f"{m}_s{s}") for m in METHODS for s in args.seeds}
    jobs = [
        (name, train_command(args, m, s, epochs, run), out / "logs" / f"{name}.train.log")
        for name, (m, s, run) in runs.items()
    ]
    train_status = _run_all(jobs, len(jobs), deadline)
    info["train_seconds"] = time.time() - t0
    info["train_status"] = train_status
    done = {n: r for n, r in runs.items() if train_status.get(n) == 0}
    for name, (_, _, run) in done.items():
        info.setdefault("runs", {})[name] = run_throughput(run)
    print(f"training: {info['train_seconds']:.0f} s; {len(done)}/{len(runs)} runs finished", flush=True)

    # 3. float16 weights, then evaluation
    models: dict[str, str] = {}
    for name, (m, s, run) in done.items():
        command = " ".join(["clmae", *train_command(args, m, s, epochs, run)[3:]])
        models[name] = str(store_half(run, m, epochs, command))
    models.update({f"random_s{s}": ARCH for s in args.seeds})
    models["raw-pixels"] = "raw-pixels"
    t0 = time.time()
    jobs = eval_jobs(args, models, out, with_finetune=False)
    info["eval_status"] = _run_all(jobs, args.parallel_eval, deadline)
    info["eval_seconds"] = time.time() - t0
    if args.finetune_epochs:
        t0 = time.time()
        ft = [j for j in eval_jobs(args, models, out, with_finetune=True) if j[0].startswith("finetune")]
        info["finetune_status"] = _run_all(ft, args.parallel_eval, deadline)
        info["finetune_seconds"] = time.time() - t0

    # 4. summary and figure
    groups = {METHOD_TITLES[m]: [f"{m}_s{s}" for s in args.seeds] for m in METHODS}
    groups["random init"] = [f"random_s{s}" for s in args.seeds]
    groups["raw pixels"] = ["raw-pixels"]
    info["total_seconds"] = time.time() - start
    summarize(out, groups, info)
    first = out / "runs" / f"clmae_s{args.seeds[0]}"
    if f"clmae_s{args.seeds[0]}" in done:
        curriculum_figure(first, out / "curriculum.png")
    return 0 if len(done) == len(runs) else 1


if __name__ == "__main__":
    sys.exit(main())
