"""What the Fashion-MNIST comparison reports: per-method means over seeds, the CL-MAE - MAE difference in units of
its standard error, how varied each method's masks were, and the curriculum figure."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

from clmae.models import METHOD_TITLES


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
    pair = (METHOD_TITLES["clmae"], METHOD_TITLES["mae"])
    if all(g in rows for g in pair):
        summary["comparison"] = {"of": " - ".join(pair), **comparison(rows, *pair)}
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
    if "comparison" in summary:
        lines += ["", *comparison_lines(summary["comparison"], *pair)]
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


def difference(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float] | None:
    """``a - b`` of two summary cells (means over seeds), and that difference in units of its standard error
    ``sigma = sqrt(std_a^2 / n_a + std_b^2 / n_b)`` (``None`` with fewer than two seeds on either side)."""
    if len(a["values"]) < 2 or len(b["values"]) < 2:
        return None
    diff = a["mean"] - b["mean"]
    sigma = math.sqrt(a["std"] ** 2 / len(a["values"]) + b["std"] ** 2 / len(b["values"]))
    return {
        "difference": diff,
        "sigma": sigma,
        "in_sigma": diff / sigma if sigma > 0 else math.copysign(math.inf, diff),
    }


def comparison(rows: dict[str, Any], first: str, second: str) -> dict[str, Any]:
    """Per metric, :func:`difference` of group ``first`` minus group ``second``."""
    out = {}
    for key, *_ in COLUMNS:
        if key in rows.get(first, {}) and key in rows.get(second, {}):
            d = difference(rows[first][key], rows[second][key])
            if d is not None:
                out[key] = d
    return out


def comparison_lines(comp: dict[str, Any], first: str, second: str) -> list[str]:
    """Markdown lines: ``first - second`` per metric in points and in sigma."""
    lines = []
    for key, _, _, title in COLUMNS:
        if key in comp:
            d = comp[key]
            lines.append(
                f"- {title}: {first} - {second} = {100 * d['difference']:+.2f} points "
                f"({d['in_sigma']:+.1f} sigma, sigma = {100 * d['sigma']:.2f})"
            )
    return lines


MASK_COLUMNS = [
    ("distinct per image, whole run", lambda s: s["run"]["distinct_per_image"].get("mean"), "{:.1f}"),
    ("distinct per image, last quarter", lambda s: s["run"]["last_quarter_distinct_per_image"].get("mean"), "{:.1f}"),
    ("distinct masks, last epoch", lambda s: s["epochs"][-1].get("distinct_masks"), "{:.0f}"),
    (
        "keep frequency min-max, last epoch",
        lambda s: (s["epochs"][-1]["keep_min"], s["epochs"][-1]["keep_max"]),
        "{:.2f}-{:.2f}",
    ),
    ("positions never kept, last epoch", lambda s: s["epochs"][-1].get("never_kept"), "{:.0f}"),
    ("mask_diversity, last epoch", lambda s: s["epochs"][-1].get("mask_diversity"), "{:.3f}"),
    ("position_bias, last epoch", lambda s: s["epochs"][-1].get("position_bias"), "{:.3f}"),
]


def mask_report(out: Path, runs: dict[str, Path], mask_ratio: float = 0.75) -> str:
    """``masks.json`` (the probe statistics of every run, :func:`clmae.train.probe.probe_statistics`, with the last
    logged ``score_binary`` of CL-MAE runs) and a markdown table, one row per run."""
    from clmae.train.metrics import read_metrics
    from clmae.train.probe import probe_statistics

    stats: dict[str, Any] = {}
    for name, run in runs.items():
        try:
            stats[name] = probe_statistics(run, mask_ratio)
        except FileNotFoundError:
            continue
        records = read_metrics(run / "metrics.jsonl") if (run / "metrics.jsonl").is_file() else []
        logged = [r for r in records if "score_binary" in r and r.get("type") != "epoch"]
        if logged:
            stats[name]["score_binary_last"] = logged[-1]["score_binary"]
    (out / "masks.json").write_text(json.dumps(stats, indent=1) + "\n")
    head = "| run | " + " | ".join(c[0] for c in MASK_COLUMNS) + " | score_binary (last log) |"
    lines = [head, "|" + "---|" * (len(MASK_COLUMNS) + 2)]
    for name, s in stats.items():
        cells = []
        for _, get, fmt in MASK_COLUMNS:
            try:
                value = get(s)
            except (KeyError, IndexError):
                value = None
            cells.append(
                "-" if value is None else fmt.format(*value) if isinstance(value, tuple) else fmt.format(value)
            )
        score = s.get("score_binary_last")
        cells.append("-" if score is None else f"{score:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
