"""Train, evaluate and package the zoo's Fashion-MNIST weights: does CL-MAE beat MAE? Several seeds of each.

Every number in ``weights/fmnist_results/`` and MODEL_CARD.md comes from ``bash benchmarks/run_gpu_fmnist.sh``: one
call on one GPU. The same schedule again, with the epochs and batch that call chose (``summary.json``)::

    python -m tools.zoo.fmnist --data fmnist --out runs/fmnist_zoo --seeds 0 1 2 --epochs E --batch-size B --device cuda

Stages, most valuable first (each a plain ``clmae`` command, run as concurrent processes on one device); after each
one ``summary.json`` is written again from what exists and, with ``--deliver DIR``, the results are handed back into
DIR at once (:mod:`tools.deliver`), so a call cut at any moment keeps every finished stage:

1. ``schedule`` (``--epochs auto``): time the training iteration of all the planned runs at once (augmentation and
   mask recording included) with ``--max-seeds`` seeds per method, at batch ``--batch-size`` doubled up to
   ``--max-batch-size``, until the runs reach ``--min-epochs`` in ``--train-seconds``; with fewer seeds (down to
   ``--min-seeds``) if none does. The peak LR follows ``base_lr * batch / 256`` for both methods alike. A
   calibration that fails or overruns ``--calibrate-seconds`` never stops the pipeline (:func:`choose_schedule`).
2. ``train``: ``clmae train --recipe clmae_fmnist`` / ``mae_fmnist`` for each seed: the 60,000 training images with
   MAE's augmentation (RandomResizedCrop 0.2-1 + flip, on the device), warm-up 20 % of the epochs, the masks of the
   first ``--mask-probe`` images recorded every epoch. The recipes differ only in ``method``. Beside them, unless
   ``--no-diagnostics``, two labelled diagnostics of the first seed: CL-MAE with lambda fixed at +1 (the masking
   module always a partner) and at -1 (always an adversary); they are never reported as CL-MAE. Runs still going at
   the training deadline are stopped and exported from their newest checkpoint (``summary.json`` says so). Every
   run's weights are stored in float16 (the published format); those files are what is evaluated.
3. ``probe``: both kNN protocols and the linear probe (features cached) of every seed of both methods, on the 10,000
   test images.
4. ``masks``: ``masks.json`` / ``masks.md`` (how many distinct masks each image received, per-position keep
   frequency, ...), ``curriculum.png``, and the diagnostics' probes.
5. ``references``: raw pixels and randomly initialised encoders.
6. ``finetune``: fine-tuning of the first seed of each method.

``summary.json`` / ``summary.md``: mean and std over seeds, CL-MAE - MAE in units of its standard error.

Nothing here is specific to a GPU: ``SMOKE=1 bash benchmarks/run_gpu_fmnist.sh`` runs every stage on the CPU with a
small model in minutes; ``python -m tools.zoo.publish OUT`` then
packages the first seed of each method as the bundled weights.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from clmae.models import METHOD_TITLES, METHODS
from clmae.train.config import TrainConfig, apply_overrides, load_recipe

from ._jobs import clmae_command as _clmae
from ._jobs import run_all as _run_all
from .calibrate import choose_path
from .report import curriculum_figure, mask_report, summarize

ARCH = "vit_tiny_patch4_28"
ROOT = Path(__file__).resolve().parents[2]  # the source checkout: calibration children run tools.zoo from there
__all__ = ["ARCH", "main", "run_throughput", "summarize", "train_command"]
# The two labelled diagnostics: CL-MAE with the curriculum factor held (not CL-MAE; never reported as such).
DIAGNOSTICS = {"partner": 1.0, "adversary": -1.0}


def _train_images(spec: str) -> int:
    """How many images the training data spec holds."""
    from clmae.data import build_pretraining_data

    return len(build_pretraining_data(spec, 1, 28).dataset)


# ---------------------------------------------------------------------------------------------------------------
# 1. calibration
# ---------------------------------------------------------------------------------------------------------------


def run_model(method: str, overrides: list[str]) -> tuple[str, dict[str, Any]]:
    """The architecture and model arguments a run of ``method`` trains: its recipe, then ``overrides``, read by the
    parser of ``clmae train`` itself."""
    cfg = apply_overrides(TrainConfig.from_dict(load_recipe(f"{method}_fmnist")), list(overrides))
    return cfg.model, dict(cfg.model_kwargs)


def calibrate_child(
    method: str,
    batch: int,
    device: str,
    steps: int,
    out: Path,
    probe: int = 1000,
    warmup: int = 15,
    fake_graph: str | None = None,
    overrides: tuple[str, ...] = (),
) -> None:
    """Time ``steps`` updates of the trainer's loop (after ``warmup`` ones) on random uint8 images held on the device
    (:func:`tools.zoo.calibrate.time_updates`): eagerly, then on CUDA as the graphed update (``cuda_graph=true``).
    Writes images/s and the first losses of both to ``out``. ``fake_graph`` (CPU rehearsals) replaces the graphed
    record by a made-up one: ``faster``, ``slower``, ``differs`` or ``fails``. ``overrides``: the runs' ``key=value``
    options, so that the model timed is the model trained (:func:`run_model`)."""
    from .calibrate import time_updates

    arch, model_kwargs = run_model(method, list(overrides))
    timed = dict(probe=probe, arch=arch, model_kwargs=model_kwargs)
    record = {"method": method, "batch": batch, "steps": steps}
    record.update(time_updates(method, batch, device, steps, warmup, **timed))
    if fake_graph is not None:
        graph = _made_up_graph(record, fake_graph)
    elif device.startswith("cuda"):
        graph = time_updates(method, batch, device, steps, warmup, graph=True, **timed)
    else:
        graph = {"error": f"CUDA graphs need a CUDA device, not {device}"}
    record["graph"] = graph
    out.write_text(json.dumps(record))


def _made_up_graph(eager: dict[str, Any], kind: str) -> dict[str, Any]:
    """A graphed calibration record for a CPU rehearsal of every branch of :func:`tools.zoo.calibrate.choose_path`."""
    rate, losses = eager["images_per_s"], eager["losses"]
    if kind == "fails":
        return {"error": "made-up capture failure (rehearsal)", "graphed": False}
    if kind == "differs":
        return {"images_per_s": 2 * rate, "losses": [[v * 1.5 for v in row] for row in losses], "graphed": True}
    if kind not in ("faster", "slower"):
        raise ValueError(f"fake_graph must be faster, slower, differs or fails, got {kind!r}")
    return {"images_per_s": rate * (2 if kind == "faster" else 0.5), "losses": losses, "graphed": True}


def calibrate(args: argparse.Namespace, methods: list[str], batch: int, out: Path, deadline: float) -> dict[str, Any]:
    """Images/s per run while one calibration process per planned run (``methods``) trains at once (the slowest), of
    the path :func:`tools.zoo.calibrate.choose_path` chooses (graphed when it is proven equal and faster).

    Raises:
        RuntimeError: a process failed or the deadline came first.
    """
    folder = out / "calibration" / f"batch{batch}"
    jobs = []
    for k, method in enumerate(methods):
        f = folder / f"{k}_{method}.json"
        f.unlink(missing_ok=True)  # never mix in an earlier call's timings
        cmd = [sys.executable, "-m", "tools.zoo.fmnist", "--calibrate-child", method, "--batch-size", str(batch)]
        cmd += ["--device", args.device, "--out", str(f.resolve()), "--mask-probe", str(args.mask_probe)]
        cmd += ["--calibrate-steps", str(args.calibrate_steps), "--calibrate-warmup", str(args.calibrate_warmup)]
        if getattr(args, "fake_graph", None):
            cmd += ["--fake-graph", args.fake_graph]
        for item in getattr(args, "override", []):  # the runs' options: time the model that will train
            cmd += ["--override", item]
        jobs.append((f"calibrate {method} #{k} batch {batch}", cmd, f.with_suffix(".log")))
    _run_all(jobs, len(jobs), deadline, cwd=ROOT)
    found = [json.loads(p.read_text()) for p in folder.glob("*.json")]
    if len(found) < len(jobs):
        raise RuntimeError(f"calibration at batch {batch} failed or ran out of time: see {folder}/*.log")
    return choose_path(found)


def planned_methods(seeds: int, diagnostics: bool) -> list[str]:
    """The method of every run trained at once: each method's seeds, then the labelled diagnostics (CL-MAE)."""
    return [m for m in METHODS for _ in range(seeds)] + (["clmae"] * len(DIAGNOSTICS) if diagnostics else [])


def choose_schedule(args: argparse.Namespace, out: Path, deadline: float) -> dict[str, Any]:
    """Seeds per method, batch and epochs of every run, from timings of all the planned runs at once.

    For each batch from ``--batch-size``, doubled up to ``--max-batch-size``, the rate per run is measured with
    ``--max-seeds`` seeds per method (and the diagnostics) training at once; the first batch at which those runs reach
    ``--min-epochs`` in ``--train-seconds`` is chosen. If none does, fewer seeds (down to ``--min-seeds``) are
    tried on the measured rates scaled by the number of runs (the device is shared: fewer runs, each faster); if
    still none fits, ``--min-seeds`` at the batch with the most epochs. A calibration that fails or passes
    ``deadline`` never stops the pipeline: the rates measured so far decide, else ``--fallback-epochs`` at
    ``--batch-size`` with ``--min-seeds`` seeds. Returns the choice and every measurement.
    """
    images = _train_images(args.data)
    diagnostics = not args.no_diagnostics
    most = planned_methods(args.max_seeds, diagnostics)

    def epochs_at(rate: float) -> int:
        return max(2, min(args.max_epochs, int(args.train_seconds * rate * args.safety / images)))

    measured: dict[int, dict[str, float]] = {}
    notes = []
    batch = args.batch_size
    while batch <= args.max_batch_size:
        try:
            got = calibrate(args, most, batch, out, deadline)
        except RuntimeError as e:
            notes.append(str(e))
            print(f"  calibration stopped: {e}", flush=True)
            break
        # calibrate's choice of path (a bare number: an eager rate, no graphed path measured)
        rate, path = (
            (got["images_per_s"], {"path": got["path"], "why": got["why"]}) if isinstance(got, dict) else (got, {})
        )
        measured[batch] = {"images_per_s_per_run": rate, "epochs": epochs_at(rate), "runs": len(most), **path}
        if path:
            print(f"  batch {batch}: {path['why']}", flush=True)
        print(f"  batch {batch}: {rate:.0f} images/s per run with {len(most)} runs at once -> {epochs_at(rate)} epochs")
        if epochs_at(rate) >= args.min_epochs:
            return {
                "seeds": args.max_seeds,
                "batch_size": batch,
                "epochs": epochs_at(rate),
                "estimated": False,
                "calibration": measured,
                "train_images": images,
                "notes": notes,
                **_path_of(measured[batch], rate),
            }
        batch *= 2
    if not measured:
        return {
            "seeds": args.min_seeds,
            "batch_size": args.batch_size,
            "epochs": args.fallback_epochs,
            "estimated": True,
            "calibration": {},
            "train_images": images,
            "notes": [*notes, f"no calibration finished: fallback of {args.fallback_epochs} epochs"],
            "path": "eager",
            "why": "eager: no calibration finished",
            "images_per_s_per_run": None,
        }
    best = (args.min_seeds, max(measured, key=lambda b: measured[b]["epochs"]))
    for seeds in range(args.max_seeds - 1, args.min_seeds - 1, -1):
        runs = len(planned_methods(seeds, diagnostics))
        fits = [
            b
            for b in sorted(measured)
            if epochs_at(measured[b]["images_per_s_per_run"] * len(most) / runs) >= args.min_epochs
        ]
        if fits:
            best = (seeds, fits[0])
            break
    seeds, batch = best
    rate = measured[batch]["images_per_s_per_run"] * len(most) / len(planned_methods(seeds, diagnostics))
    return {
        "seeds": seeds,
        "batch_size": batch,
        "epochs": epochs_at(rate),
        "estimated": True,
        "calibration": measured,
        "train_images": images,
        "notes": notes,
        **_path_of(measured[batch], rate),
    }


def _path_of(measured: dict[str, Any], rate: float) -> dict[str, Any]:
    """The schedule's update path (``cuda_graph=true`` when ``"graph"``), why, and the rate per run it expects."""
    return {"path": measured.get("path", "eager"), "why": measured.get("why", "eager"), "images_per_s_per_run": rate}


def plan_line(plan: dict[str, Any]) -> str:
    """The schedule in one line, printed before training (as written to ``summary.json``'s ``plan``)."""
    secs = plan["expected_train_seconds"]
    expect = "unknown" if secs is None else f"about {secs:.0f} s"
    return (
        f"plan: {plan['path']} updates, batch {plan['batch_size']}, {plan['epochs']} epochs, seeds {plan['seeds']} "
        f"({plan['runs']} runs at once), training {expect} ({plan['why']})"
    )


# ---------------------------------------------------------------------------------------------------------------
# 2. training
# ---------------------------------------------------------------------------------------------------------------


def run_throughput(run: Path) -> dict[str, float]:
    """A finished run's training seconds, images/s (all images over all epoch time) and last MAE loss, from its
    ``metrics.jsonl`` and exported ``train_config.json``."""
    from clmae.train.metrics import read_metrics

    epochs = [r for r in read_metrics(run / "metrics.jsonl") if r.get("type") == "epoch"]
    config = json.loads((run / "export" / "train_config.json").read_text())
    seconds = sum(r["seconds"] for r in epochs)
    images = epochs[-1]["step"] * config["batch_size"] * config["accum_iter"]
    return {"seconds": seconds, "images_per_s": images / seconds, "final_mae_loss": epochs[-1]["mae_loss"]}


def train_command(
    args: argparse.Namespace,
    method: str,
    seed: int,
    epochs: int,
    run: Path,
    batch: int,
    fixed_lambda: float | None = None,
    cuda_graph: bool = False,
) -> list[str]:
    """The ``clmae train`` command of one run (``fixed_lambda``: a labelled diagnostic, not CL-MAE; ``cuda_graph``:
    the graphed update)."""
    extra = [] if fixed_lambda is None else [f"fixed_lambda={fixed_lambda:g}"]
    extra += ["cuda_graph=true"] if cuda_graph else []
    return _clmae(
        "train",
        "--recipe",
        f"{method}_fmnist",
        "--data",
        args.data,
        "--out",
        str(run),
        f"seed={seed}",
        f"epochs={epochs}",
        f"warmup_epochs={epochs / 5:g}",  # the reference's 40 of 200
        f"batch_size={batch}",
        f"base_lr={args.base_lr}",
        f"device={args.device}",
        f"mask_probe={args.mask_probe}",
        f"vis_every={max(1, epochs // 10)}",
        f"save_every={max(1, epochs // 10)}",
        "keep_checkpoints=1",
        "progress=false",
        *extra,
        *args.override,
    )


def finish_stopped(run: Path) -> int | None:
    """Export a run stopped at the deadline from its newest checkpoint; returns the epochs it completed (``None``:
    no checkpoint yet)."""
    import subprocess

    from clmae.train.checkpoint import list_checkpoints

    ends = [c for c in list_checkpoints(run) if c.stem.count("-") == 1]  # end-of-epoch checkpoints only
    if not ends:
        return None
    newest = ends[-1]
    subprocess.run(_clmae("export", str(newest), str(run / "export")), check=True, capture_output=True)
    return int(newest.stem.split("-")[1])


# ---------------------------------------------------------------------------------------------------------------
# 3. publishing format and evaluation
# ---------------------------------------------------------------------------------------------------------------


def store_half(run: Path, method: str, epochs: int, command: str, diagnostic: bool = False) -> Path:
    """``run/published``: the run's exported weights stored in float16, with the model card's facts."""
    import torch

    from clmae.hub import load_pretraining_model, save_pretrained

    model = load_pretraining_model(run / "export")
    title = METHOD_TITLES[method] if not diagnostic else "Diagnostic (CL-MAE with its curriculum factor held fixed)"
    metadata = {
        "license": "apache-2.0",
        "datasets": ["fashion_mnist"],
        "method": method,
        "description": f"{title} pretraining of `{ARCH}` for {epochs} epochs on the 60,000 Fashion-MNIST training "
        f"images with `clmae train` (recipe `{method}_fmnist`). Reproduce: `{command}`.",
    }
    return save_pretrained(model, run / "published", metadata=metadata, dtype=torch.float16)


def eval_jobs(
    args: argparse.Namespace, models: dict[str, str], out: Path, finetune: tuple[str, ...] | list[str] = ()
) -> list:
    """``clmae eval`` jobs: kNN and linear probe of every model, and fine-tuning of the models in ``finetune``."""
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
        if name in finetune:
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


class Stages:
    """The pipeline's stages in order of value, each handed back as soon as it ends (:func:`tools.deliver`).

    After every stage the summary is written again from what exists, so a stage that fails or runs out of time
    costs only the stages after it; ``summary.json`` lists every stage and how it ended.
    """

    def __init__(self, out: Path, deliver_to: Path | None, groups: dict[str, list[str]], info: dict[str, Any]):
        self.out, self.deliver_to, self.groups, self.info = out, deliver_to, groups, info
        info.setdefault("stages", {})

    def end(self, name: str, status: str) -> None:
        """Record that stage ``name`` ended (``status``: ``done``, ``partial``, ``skipped`` or ``failed: ...``),
        write the summary and hand the results back."""
        self.info["stages"][name] = status
        self.info["total_seconds"] = time.time() - self.info["start"]
        summarize(self.out, self.groups, {k: v for k, v in self.info.items() if k != "start"})
        print(f"stage {name}: {status}", flush=True)
        if self.deliver_to is not None:
            from tools.deliver import PRESETS, atomic_write, deliver

            atomic_write(self.deliver_to / "summary.json", (self.out / "summary.json").read_bytes())
            exclude, low = PRESETS["zoo"]  # mask records and later seeds' pictures go first past the return limit
            deliver(self.out, self.deliver_to / "results.tar.gz", stage=name, exclude=exclude, low=low)


def return_weights(paths: dict[str, Path], seed: int, deliver_to: Path) -> dict[str, Any] | None:
    """Hand back the float16 pretraining weights of ``seed`` of each method (the candidates for the bundled pair) as
    one tar in parts of at most 15 MB: few files, as a GPU machine returns few. Returns what ``summary.json``
    records of it (its sha256 included), or ``None`` if no weights exist."""
    import hashlib
    import tarfile
    import tempfile

    from tools.deliver import deliver_parts

    files = {f"{m}_s{seed}.pretraining.safetensors": paths.get(f"{m}_s{seed}") for m in METHODS}
    files = {k: p / "published" / "pretraining.safetensors" for k, p in files.items() if p is not None}
    files = {k: f for k, f in files.items() if f.is_file()}
    if not files:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / f"weights_s{seed}.tar"
        with tarfile.open(bundle, "w") as tar:
            for name, f in files.items():
                tar.add(f, arcname=name)
        parts = deliver_parts(bundle, deliver_to / bundle.name)
        digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    return {"file": bundle.name, "parts": [p.name for p in parts], "sha256": digest, "holds": sorted(files)}


def _status(found: dict[str, int | None], names: list[str]) -> str:
    ok = sum(found.get(n) == 0 for n in names)
    return "done" if ok == len(names) else ("partial" if ok else "failed") + f" ({ok}/{len(names)} jobs)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="fmnist", help="training data spec (fmnist: Debian's files; fmnist:FOLDER)")
    p.add_argument("--eval-data", default=None, help="evaluation data spec (default: --data)")
    p.add_argument("--out", default="runs/fmnist_zoo")
    p.add_argument("--deliver", type=Path, default=None, help="hand each stage's results back into this folder")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds of each method (default: chosen)")
    p.add_argument("--min-seeds", type=int, default=3, help="--seeds unset: at least this many per method")
    p.add_argument("--max-seeds", type=int, default=5, help="--seeds unset: this many when time allows")
    p.add_argument("--epochs", default="auto", help="epochs of every run, or 'auto' (fit --train-seconds)")
    p.add_argument("--train-seconds", type=float, default=300.0, help="--epochs auto: time for the training step")
    p.add_argument("--min-epochs", type=int, default=50, help="--epochs auto: grow the batch until this many fit")
    p.add_argument("--max-epochs", type=int, default=200)
    p.add_argument("--fallback-epochs", type=int, default=20, help="--epochs auto: if no calibration finishes")
    p.add_argument("--calibrate-seconds", type=float, default=120.0, help="--epochs auto: time for calibration")
    p.add_argument("--safety", type=float, default=0.8, help="--epochs auto: share of the measured rate relied on")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-batch-size", type=int, default=1024, help="--epochs auto: largest batch tried")
    p.add_argument("--calibrate-steps", type=int, default=40, help="timed iterations of each calibration process")
    p.add_argument("--calibrate-warmup", type=int, default=15, help="untimed iterations before them")
    p.add_argument("--base-lr", type=float, default=1e-3, help="AdamW rate at batch 256 (peak = base_lr*batch/256)")
    p.add_argument("--workers", type=int, default=2, help="data-loading processes of fine-tuning")
    p.add_argument("--device", default="cuda")
    p.add_argument("--mask-probe", type=int, default=1000, help="images whose masks every run records per epoch")
    p.add_argument("--no-diagnostics", action="store_true", help="no fixed-lambda diagnostic runs")
    p.add_argument("--override", action="append", default=[], help="KEY=VALUE for every clmae train (repeatable)")
    p.add_argument("--linear-epochs", type=int, default=90)
    p.add_argument("--finetune-epochs", type=int, default=0, help="0: no fine-tuning")
    p.add_argument("--finetune-seeds", type=int, nargs="+", default=None, help="seeds fine-tuned (default: the first)")
    p.add_argument("--reference-seeds", type=int, default=3, help="randomly initialised encoders evaluated")
    p.add_argument("--parallel-eval", type=int, default=6)
    p.add_argument("--train-deadline", type=float, default=None, help="stop training this many seconds after start")
    p.add_argument("--deadline", type=float, default=None, help="stop everything this many seconds after start")
    p.add_argument("--limit", type=int, default=None, help="evaluate on this many training images (smoke tests)")
    p.add_argument("--calibrate-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cuda-graph", action="store_true", help="fixed --epochs: train with cuda_graph=true")
    p.add_argument(
        "--fake-graph",
        choices=("faster", "slower", "differs", "fails"),
        default=None,
        help="CPU rehearsal: made-up graphed calibration records",
    )
    args = p.parse_args(argv)
    out = Path(args.out)
    if args.calibrate_child:
        out.parent.mkdir(parents=True, exist_ok=True)
        calibrate_child(
            args.calibrate_child,
            args.batch_size,
            args.device,
            args.calibrate_steps,
            out,
            args.mask_probe,
            args.calibrate_warmup,
            args.fake_graph,
            tuple(args.override),
        )
        return 0
    if not 1 <= args.min_seeds <= args.max_seeds:
        p.error("--min-seeds must be at least 1 and at most --max-seeds")
    args.eval_data = args.eval_data or args.data
    if (out / "runs").exists():
        p.error(f"{out} already holds runs; choose a new --out (results of different calls are never mixed)")
    start = time.time()
    deadline = start + (1e9 if args.deadline is None else args.deadline)
    train_deadline = min(deadline, start + (1e9 if args.train_deadline is None else args.train_deadline))
    out.mkdir(parents=True, exist_ok=True)
    if args.deliver is not None:
        args.deliver.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {
        "start": start,
        "arch": ARCH,
        "recipes": [f"{m}_fmnist" for m in METHODS],
        "augmentation": "RandomResizedCrop(28, scale 0.2-1, ratio 3/4-4/3, bicubic) + horizontal flip",
        "base_lr": args.base_lr,
        "data": args.data,
        "device": args.device,
        "linear_epochs": args.linear_epochs,
        "finetune_epochs": args.finetune_epochs,
        "overrides": args.override,
    }
    if args.device.startswith("cuda"):
        import torch

        info["gpu"] = torch.cuda.get_device_name(0)
        info["torch"] = torch.__version__

    # 1. seeds, batch and epochs
    if args.epochs == "auto":
        print("calibrating: the planned runs' training iterations, all at once", flush=True)
        calibration_deadline = min(train_deadline, start + args.calibrate_seconds)
        choice = choose_schedule(args, out, calibration_deadline)
        seeds = args.seeds or list(range(choice["seeds"]))
        batch, epochs = choice["batch_size"], choice["epochs"]
        info["calibration"] = {k: v for k, v in choice.items() if k not in ("batch_size", "epochs")}
        path, why, rate = choice["path"], choice["why"], choice["images_per_s_per_run"]
    else:
        seeds = args.seeds or list(range(args.min_seeds))
        batch, epochs = args.batch_size, int(args.epochs)
        path, why = ("graph", "graph: --cuda-graph") if args.cuda_graph else ("eager", "eager: fixed schedule")
        rate = None
    info.update(seeds=seeds, batch_size=batch, epochs=epochs, warmup_epochs=epochs / 5)
    n_runs = len(seeds) * len(METHODS) + (0 if args.no_diagnostics else len(DIAGNOSTICS))
    if rate is not None and args.seeds and len(args.seeds) != choice["seeds"]:  # fixed seeds: the rate scales
        rate = rate * len(planned_methods(choice["seeds"], not args.no_diagnostics)) / n_runs
    expected = None if rate is None else epochs * choice["train_images"] / rate
    info["plan"] = {"path": path, "why": why, "batch_size": batch, "epochs": epochs, "seeds": seeds, "runs": n_runs,
                    "expected_train_seconds": expected}  # fmt: skip
    print(plan_line(info["plan"]), flush=True)

    # The runs: every method x seed, and the labelled diagnostics of the first seed.
    first = seeds[0]
    runs: dict[str, tuple[str, int, float | None]] = {f"{m}_s{s}": (m, s, None) for m in METHODS for s in seeds}
    if not args.no_diagnostics:
        runs.update({f"diagnostic_{k}_s{first}": ("clmae", first, lam) for k, lam in DIAGNOSTICS.items()})
    references = seeds[: args.reference_seeds]
    groups = {METHOD_TITLES[m]: [f"{m}_s{s}" for s in seeds] for m in METHODS}
    for k in DIAGNOSTICS:
        if not args.no_diagnostics:
            groups[f"diagnostic: CL-MAE, lambda fixed {DIAGNOSTICS[k]:+g} ({k})"] = [f"diagnostic_{k}_s{first}"]
    groups["random init"] = [f"random_s{s}" for s in references]
    groups["raw pixels"] = ["raw-pixels"]
    stages = Stages(out, args.deliver, groups, info)
    stages.end("schedule", "done" if args.epochs != "auto" or not info["calibration"]["notes"] else "fallback")
    print(f"training {len(runs)} runs ({len(seeds)} seeds per method): {epochs} epochs at batch {batch}", flush=True)

    # 2. training; runs still going at the training deadline are exported from their newest checkpoint
    t0 = time.time()
    paths = {name: out / "runs" / name for name in runs}
    graphed = path == "graph"
    commands = {n: train_command(args, m, s, epochs, paths[n], batch, lam, graphed) for n, (m, s, lam) in runs.items()}
    jobs = [(name, commands[name], out / "logs" / f"{name}.train.log") for name in runs]
    train_status = _run_all(jobs, len(jobs), train_deadline)
    info["train_seconds"] = time.time() - t0
    info["train_status"] = train_status
    done = [n for n in runs if train_status.get(n) == 0]
    for name in runs:
        if train_status.get(name) is None and paths[name].is_dir():
            completed = finish_stopped(paths[name])
            if completed:
                info.setdefault("stopped_at_epoch", {})[name] = completed
                done.append(name)
                print(f"  {name}: stopped at the deadline after {completed} epochs, exported from that checkpoint")
    models: dict[str, str] = {}
    for name in done:  # float16 weights: the published format, and what is evaluated
        info.setdefault("runs", {})[name] = run_throughput(paths[name])
        method = runs[name][0]
        command = " ".join(["clmae", *commands[name][3:]])
        trained = info.get("stopped_at_epoch", {}).get(name, epochs)
        models[name] = str(store_half(paths[name], method, trained, command, diagnostic=runs[name][2] is not None))
    print(f"training: {info['train_seconds']:.0f} s; {len(done)}/{len(runs)} runs have weights", flush=True)
    if args.deliver is not None:
        info["weights_returned"] = return_weights(paths, first, args.deliver)
    stages.end(
        "train",
        "done"
        if len(done) == len(runs) and "stopped_at_epoch" not in info
        else f"partial ({len(done)}/{len(runs)} runs have weights)",
    )

    # 3. kNN and linear probe of both methods' seeds
    def evaluate(stage: str, names: list[str], finetune: tuple[str, ...] = ()) -> None:
        chosen = {n: models[n] for n in names if n in models}
        jobs = [j for j in eval_jobs(args, chosen, out, finetune) if bool(finetune) == j[0].startswith("finetune")]
        if not jobs or time.time() > deadline:
            stages.end(stage, "skipped" if not jobs else "skipped (out of time)")
            return
        t0 = time.time()
        status = _run_all(jobs, args.parallel_eval, deadline)
        info.setdefault("eval_status", {}).update(status)
        info.setdefault("eval_seconds", {})[stage] = time.time() - t0
        stages.end(stage, _status(status, [j[0] for j in jobs]))

    evaluate("probe", [n for n in runs if not n.startswith("diagnostic")])

    # 4. the masks each run trained with, the curriculum figure, and the fixed-lambda diagnostics' probes
    try:
        table = mask_report(out, {n: paths[n] for n in done})
        (out / "masks.md").write_text(table + "\n")
        print(table, flush=True)
        if f"clmae_s{first}" in done:
            curriculum_figure(paths[f"clmae_s{first}"], out / "curriculum.png")
    except Exception as e:  # a report that fails must not cost the stages after it
        info["masks_error"] = f"{type(e).__name__}: {e}"
    evaluate("masks", [n for n in runs if n.startswith("diagnostic")])

    # 5. references: randomly initialised encoders and raw pixels
    models.update({f"random_s{s}": ARCH for s in references})
    models["raw-pixels"] = "raw-pixels"
    evaluate("references", [*(f"random_s{s}" for s in references), "raw-pixels"])

    # 6. fine-tuning of the first seed(s) of each method
    if args.finetune_epochs:
        tuned = tuple(n for n in (f"{m}_s{s}" for m in METHODS for s in args.finetune_seeds or [first]) if n in models)
        evaluate("finetune", list(tuned), finetune=tuned)
    return 0 if len(done) == len(runs) and "stopped_at_epoch" not in info else 1


if __name__ == "__main__":
    sys.exit(main())
