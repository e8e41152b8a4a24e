"""Package the first seed of each method of a ``tools.zoo.fmnist`` run as the zoo's Fashion-MNIST weights.

    python -m tools.zoo.publish runs/fmnist_zoo

For CL-MAE and MAE (seed ``--seed``) it rebuilds the Hub-ready folder from the run's float16 weights, checks that its
files are byte-identical to the files that were evaluated, and splits it: ``config.json`` and
``pretraining.safetensors`` go into the package, ``clmae/hub/bundled/<name>/``, the only copy in the repository
(each tensor is stored once: the loaders take the encoder from the whole model's file; a Hub upload of the folder
adds ``model.safetensors`` for timm); what documents them goes into ``weights/<name>/``: the model card
(``README.md``), the run's config, metrics and pictures, and ``golden.safetensors`` (the regression test's fixed
input and expected outputs). The evaluation results go into ``weights/fmnist_results/``, and the files' sha256 and
the measured results into the registry's entries in ``clmae/hub/manifest.json`` (their names and aliases are kept).
Run it from a source checkout.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from clmae._files import sha256_file
from clmae.data import SAMPLE_ROOT, load_fashion_mnist, to_float
from clmae.hub import load_pretrained, load_pretraining_model, registry, save_pretrained
from clmae.models import METHOD_TITLES, METHODS
from tools.zoo.fmnist import ARCH, run_throughput

ROOT = Path(__file__).resolve().parents[2]  # the source checkout: weights/ is beside clmae/
NAMES = {method: f"{ARCH}.{method}_fmnist" for method in METHODS}
FILES = ("config.json", "pretraining.safetensors")  # the weight files bundled in the package, each tensor once
GOLDEN_IMAGES = 8  # the first bundled Fashion-MNIST test images


def golden_input() -> torch.Tensor:
    """The regression tests' fixed input: the first bundled test images, normalised, ``[8, 1, 28, 28]``."""
    images, _ = load_fashion_mnist("test", root=SAMPLE_ROOT)
    return to_float(images[:GOLDEN_IMAGES])


@torch.no_grad()
def golden_outputs(folder: Path) -> dict[str, torch.Tensor]:
    """Outputs of the weights in ``folder`` on :func:`golden_input`, in float32 on the CPU."""
    x = golden_input()
    encoder = load_pretrained(folder)
    out = {"input": x, "features": encoder.forward_features(x), "pooled": encoder(x)}
    model = load_pretraining_model(folder)
    if model.masker is not None:
        out["scores"] = model.masker(model.embed(x))
    return {k: v.contiguous() for k, v in out.items()}


def _pct(m: dict[str, Any] | None, n: int) -> str:
    if not m:
        return "-"
    text = f"{100 * m['mean']:.2f} ± {100 * m['std']:.2f}" if len(m["values"]) > 1 else f"{100 * m['mean']:.2f}"
    return text if len(m["values"]) == n else f"{text} (n={len(m['values'])})"


def by_model(row: dict[str, Any], key: str) -> dict[str, float]:
    """``{model: value}`` of one metric of a summary row (rows without ``by_model`` must have every value)."""
    m = row[key]
    if "by_model" in m:
        return m["by_model"]
    if len(m["values"]) != len(row["models"]):
        raise ValueError(f"{key}: {len(m['values'])} values for {len(row['models'])} models and no by_model map")
    return dict(zip(row["models"], m["values"]))


def results_table(summary: dict[str, Any]) -> str:
    """The summary's results as a markdown table (mean ± std over seeds, test-split top-1 %); a fine-tuning column
    when any encoder was fine-tuned."""
    keys = ["knn_reference", "knn_weighted", "linear"]
    head = "| encoder | seeds | kNN k=5 (CL-MAE's protocol) | kNN k=20 weighted | linear probe |"
    if any("finetune" in row for row in summary["results"].values()):
        keys.append("finetune")
        head += " fine-tuning |"
    lines = [head, "|---" * (len(keys) + 2) + "|"]
    for group, row in summary["results"].items():
        n = len(row["models"])
        lines.append(f"| {group} | {n} | " + " | ".join(_pct(row.get(k), n) for k in keys) + " |")
    return "\n".join(lines)


def verdict(summary: dict[str, Any]) -> str:
    """One sentence: CL-MAE - MAE per metric, in points and in units of the difference's standard error."""
    comp = summary.get("comparison") or {}
    parts = [
        f"{100 * comp[k]['difference']:+.2f} points of {label} ({comp[k]['in_sigma']:+.1f} sigma)"
        for k, label in (("knn_reference", "kNN"), ("linear", "linear-probe accuracy"), ("finetune", "fine-tuning"))
        if k in comp
    ]
    if not parts:
        return "CL-MAE and MAE were not both evaluated on more than one seed, so no difference is stated."
    return f"CL-MAE - MAE: {', '.join(parts)}; sigma is the standard error of the difference over the seeds."


def _card(
    method: str,
    summary: dict[str, Any],
    run_info: dict[str, Any],
    seed: int,
    command: str,
    alias: str,
    recipe: str,
) -> str:
    s = summary
    title = METHOD_TITLES[method]
    epochs = int(s["epochs"])
    shown = sorted({round(1 + i * (epochs - 1) / 4) for i in range(5)})  # as curriculum_figure picks them
    runs = len(s["train_status"]) if "train_status" in s else 2 * len(s["seeds"])
    augmentation = s.get("augmentation", "none besides the masks")
    figure = (
        f"\n\n## The curriculum\n\nLearned masks of this run after epochs {', '.join(map(str, shown[:-1]))} and "
        f"{shown[-1]} (rows per block: image, "
        "hidden patches, visible input, reconstruction, keep-scores), then the loss curves and lambda_cl: the masking "
        "module first hides the easy background (partner, lambda_cl > 0), then the garment itself (adversary, "
        "lambda_cl < 0).\n\n![curriculum](curriculum.png)"
        if method == "clmae"
        else ""
    )
    return (
        f"{title} ViT-T/4 (28 px, 1 channel) pretrained for {s['epochs']} epochs on the 60,000 Fashion-MNIST training "
        f"images with `clmae train` (recipe `{recipe}`; batch {s['batch_size']}, peak AdamW rate "
        f"{s['base_lr'] * s['batch_size'] / 256:g}, mask ratio 0.75, augmentation: {augmentation}), seed "
        f"{seed}. Trained on one {s.get('gpu', s['device'])} in {run_info['seconds']:.0f} s "
        f"({run_info['images_per_s']:.0f} images/s on average, {runs} runs "
        "sharing the card), "
        f"torch {s.get('torch', '?')}. "
        "The weights are stored in float16; the results below were measured on exactly these files.\n\n"
        f'It ships inside the `clmae` package: `clmae.load_pretrained("{alias}")` loads it with no network.\n\n'
        f"Test-split top-1 accuracy (%), mean ± std over the {len(s['seeds'])} seeds of "
        "`python -m tools.zoo.fmnist` (this weight is seed 0; per-seed values in `weights/fmnist_results`):\n\n"
        f"{results_table(summary)}\n\n"
        f"{verdict(summary)} Reproduce this run and its evaluation:\n\n"
        f"```\n{command}\nclmae eval knn --model runs/{method}/export --data fmnist\n"
        f"clmae eval linear --model runs/{method}/export --data fmnist mode=cached\n```\n\n"
        f"The numbers above were measured on these float16 files; `clmae eval knn --model {alias} --data fmnist` "
        f"measures them again.{figure}"
    )


def card_names(manifest: Path) -> dict[str, str]:
    """``{weight name: the name its card tells users to load}`` (the first alias, else the name) of ``manifest``."""
    entries = json.loads(manifest.read_text())["weights"]
    return {e["name"]: (e.get("aliases") or [e["name"]])[0] for e in entries}


def publish(
    zoo: Path, seed: int, weights_dir: Path, bundle_root: Path, load_names: dict[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """Write each method's weight files into ``bundle_root/<name>/`` and its documentation into
    ``weights_dir/<name>/``, and the evaluation results into ``weights_dir/fmnist_results/``.

    Returns ``{name: {file: sha256}}`` of the bundled files.
    """
    summary = json.loads((zoo / "summary.json").read_text())
    load_names = load_names or {}
    shas = {}
    for method, name in NAMES.items():
        run = zoo / "runs" / f"{method}_s{seed}"
        published = run / "published"
        load_name = load_names.get(name, name)
        train_config = json.loads((run / "export" / "train_config.json").read_text())
        command = (
            "clmae train --recipe {recipe} --method {method} --data fmnist --out runs/{method} seed={seed} "
            "epochs={epochs} warmup_epochs={warmup_epochs:g} batch_size={batch_size} base_lr={base_lr:g} "
            "save_every={save_every} keep_checkpoints=1 log_every=50"
        ).format(**train_config)
        model = load_pretraining_model(published)
        row = summary["results"][METHOD_TITLES[method]]
        metrics = {
            f"{key}_top1": by_model(row, key)[f"{method}_s{seed}"]
            for key in ("knn_reference", "knn_weighted", "linear")
            if key in row
        }
        metadata = {
            "license": "apache-2.0",
            "datasets": ["fashion_mnist"],
            "metrics": metrics,
            "tags": ["fashion-mnist"],
            "load_name": load_name,
            "description": _card(
                method, summary, run_throughput(run), seed, command, load_name, train_config["recipe"]
            ),
        }
        bundle, dest = bundle_root / name, weights_dir / name
        with tempfile.TemporaryDirectory() as tmp:
            hub = save_pretrained(model, Path(tmp) / name, metadata=metadata, dtype=torch.float16)
            # The files must be the bytes that were evaluated: the evaluation records the encoder file's sha256.
            evaluated = json.loads((zoo / "eval" / f"{method}_s{seed}.knn.json").read_text())["model"].get("sha256")
            if sha256_file(hub / "model.safetensors") != evaluated:
                raise RuntimeError(f"the rebuilt model.safetensors of {name} is not the evaluated file; stopped")
            if sha256_file(hub / "pretraining.safetensors") != sha256_file(published / "pretraining.safetensors"):
                raise RuntimeError(f"the rebuilt pretraining.safetensors of {name} differs from {published}; stopped")
            bundle.mkdir(parents=True, exist_ok=True)
            dest.mkdir(parents=True, exist_ok=True)
            for f in ("config.json", "model.safetensors", "pretraining.safetensors"):
                (bundle / f).unlink(missing_ok=True)
                (dest / f).unlink(missing_ok=True)  # one copy of each weight file: the bundled one
            for f in FILES:
                shutil.copy(hub / f, bundle / f)
            shutil.copy(hub / "README.md", dest / "README.md")
        (dest / "train_config.json").write_text(json.dumps(train_config, indent=2) + "\n")
        shutil.copy(run / "metrics.jsonl", dest / "metrics.jsonl")
        shutil.copy(run / "history.png", dest / "history.png")
        if method == "clmae" and (zoo / "curriculum.png").is_file():
            shutil.copy(zoo / "curriculum.png", dest / "curriculum.png")
        save_file(golden_outputs(bundle), dest / "golden.safetensors")
        shas[name] = {f: sha256_file(bundle / f) for f in FILES}
        print(f"{name}: weights in {bundle}, records in {dest}; metrics {metrics}")
    results = weights_dir / "fmnist_results"
    results.mkdir(exist_ok=True)
    shutil.copy(zoo / "summary.json", results / "summary.json")
    (results / "summary.md").write_text(results_table(summary) + "\n")
    for extra in ("masks.json", "masks.md"):  # how varied each run's masks were (clmae.train.probe)
        if (zoo / extra).is_file():
            shutil.copy(zoo / extra, results / extra)
    shutil.copytree(zoo / "eval", results / "eval", dirs_exist_ok=True)
    return shas


def update_manifest(path: Path, shas: dict[str, dict[str, str]], zoo: Path, seed: int) -> None:
    """Record the bundled files' sha256 and the measured results in the registry's existing entries (format 2)."""
    data = json.loads(path.read_text())
    if data.get("format") != 2:
        raise ValueError(f"{path}: expected a format-2 manifest, got format {data.get('format')!r}")
    summary = json.loads((zoo / "summary.json").read_text())
    missing = set(shas) - {entry["name"] for entry in data["weights"]}
    if missing:
        raise ValueError(f"{path} has no entry for {sorted(missing)}: add them (name, aliases, ...) first")
    for entry in data["weights"]:
        if entry["name"] in shas:
            method = entry["method"]
            row = summary["results"][METHOD_TITLES[method]]
            entry["files"] = shas[entry["name"]]
            entry["status"] = registry.BUNDLED
            entry["metrics"] = {
                f"fmnist_test_{k}_top1": round(by_model(row, k)[f"{method}_s{seed}"], 4)
                for k in ("knn_reference", "knn_weighted", "linear")
                if k in row
            }
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("zoo", help="the --out folder of python -m tools.zoo.fmnist")
    p.add_argument("--seed", type=int, default=0, help="which seed's weights to publish")
    args = p.parse_args(argv)
    zoo = Path(args.zoo)
    if not (ROOT / "weights").is_dir():
        p.error(f"{ROOT} is not a source checkout of clmae (no weights/ folder beside clmae/)")
    manifest = registry.MANIFEST  # the package's registry, never $CLMAE_WEIGHTS_MANIFEST
    shas = publish(zoo, args.seed, ROOT / "weights", registry.BUNDLED_ROOT, card_names(manifest))
    update_manifest(manifest, shas, zoo, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
