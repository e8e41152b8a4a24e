"""The pipeline that trains, evaluates and packages the zoo's weights (tools.zoo.fmnist, tools.zoo.publish), and
the documents that report their results."""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import HANG_GUARD, tiny_pretrainer

from clmae.cli import main
from clmae.hub import registry, save_pretrained
from clmae.models import METHODS
from tools.zoo import fmnist, publish

ROOT = Path(__file__).resolve().parents[1]
SUMMARY = json.loads((ROOT / "weights" / "fmnist_results" / "summary.json").read_text())


def _gone(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return True
    state = next((line for line in status.read_text().splitlines() if line.startswith("State:")), "")
    return "Z" in state.split()[1:2]  # a zombie has exited


@pytest.mark.slow
def test_run_all_stops_jobs_and_their_children_at_the_deadline(tmp_path):
    pid_file = tmp_path / "grandchild.pid"
    # bash, not Python: it starts its child within milliseconds, long before the deadline even on a busy machine
    sleeper = ["bash", "-c", f"sleep 600 & echo $! > {str(pid_file)!r}; wait"]
    quick = [sys.executable, "-c", "print('hello')"]
    jobs = [("sleeper", sleeper, tmp_path / "s.log"), ("waiting", quick, tmp_path / "w.log")]
    status = fmnist._run_all(jobs, 1, time.time() + 5)  # one at a time: "waiting" never gets its turn
    assert status == {"sleeper": None, "waiting": None}
    assert not (tmp_path / "w.log").exists()
    grandchild, waited = int(pid_file.read_text()), time.monotonic() + 60
    while not _gone(grandchild) and time.monotonic() < waited:  # a killed orphan is reaped a moment later
        time.sleep(0.05)
    assert _gone(grandchild)  # the whole process group was stopped, not only the direct child (it sleeps 600 s)
    assert fmnist._run_all([("quick", quick, tmp_path / "q.log")], 1, time.time() + HANG_GUARD) == {"quick": 0}
    assert (tmp_path / "q.log").read_text().strip() == "hello"


def test_summary_leaves_out_a_failed_evaluation_and_says_so(tmp_path):
    (tmp_path / "eval").mkdir()
    values = {"a_s0": 0.5, "a_s1": 0.7}  # a_s2's evaluation is missing
    for name, top1 in values.items():
        (tmp_path / "eval" / f"{name}.knn.json").write_text(
            json.dumps({"metrics": {"reference": {"top1": top1}, "weighted": {"top1": top1 + 0.1}}})
        )
    summary = fmnist.summarize(tmp_path, {"A": ["a_s0", "a_s1", "a_s2"]}, {"epochs": 1})
    row = summary["results"]["A"]
    assert row["knn_reference"]["by_model"] == values
    assert row["knn_reference"]["mean"] == pytest.approx(0.6)
    assert row["knn_reference"]["std"] == pytest.approx(0.1414213562)  # sample std of 0.5 and 0.7
    assert "linear" not in row
    assert publish.by_model(row, "knn_weighted") == {"a_s0": 0.6, "a_s1": 0.7999999999999999}
    table = publish.results_table(summary)
    assert "| A | 3 | 60.00 ± 14.14 (n=2) | 70.00 ± 14.14 (n=2) | - |" in table


def test_documents_report_the_recorded_results():
    """Every place that states the results carries the numbers of weights/fmnist_results/summary.json."""
    table = publish.results_table(SUMMARY)
    assert (ROOT / "weights" / "fmnist_results" / "summary.md").read_text().strip() == table
    for name in ("vit_tiny_patch4_28.clmae_fmnist", "vit_tiny_patch4_28.mae_fmnist"):
        assert table in (ROOT / "weights" / name / "README.md").read_text()
    model_card, readme = (ROOT / "MODEL_CARD.md").read_text(), (ROOT / "README.md").read_text()
    for group in ("CL-MAE", "MAE"):
        for key in ("knn_reference", "knn_weighted", "linear"):
            m = SUMMARY["results"][group][key]
            text = f"{100 * m['mean']:.2f} ± {100 * m['std']:.2f}"
            assert text in model_card, (group, key, text)
            assert text in readme, (group, key, text)


def test_save_pretrained_in_float16_writes_nothing_when_a_value_does_not_fit(tmp_path):
    model = tiny_pretrainer(masker_num_heads=2)
    with torch.no_grad():
        model.masker.cls_token.fill_(1e6)  # beyond float16's 65504, in the masker: after the encoder is converted
    folder = tmp_path / "w"
    with pytest.raises(ValueError, match="beyond float16's range"):
        save_pretrained(model, folder, dtype=torch.float16)
    assert not folder.exists()
    with pytest.raises(ValueError, match=r"floating-point torch\.dtype"):
        save_pretrained(model, folder, dtype=torch.int8)
    with torch.no_grad():
        model.masker.cls_token.fill_(0.1)
    save_pretrained(model, folder, dtype=torch.bfloat16)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["clmae"]["storage_dtype"] == "bfloat16"


def test_demo_cli_reads_fmnist_folder_specs_and_fails_cleanly(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--data", f"fmnist:{tmp_path / 'missing'}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "missing does not exist" in err and "--data fmnist:FOLDER" in err
    assert not out.exists()


def test_model_card_fine_tuning_numbers_are_the_recorded_ones():
    card = (ROOT / "MODEL_CARD.md").read_text()
    results = ROOT / "weights" / "fmnist_results" / "eval_cpu"
    for run, label in (("clmae_s0", "CL-MAE"), ("mae_s0", "MAE"), ("random_s0", "random initialisation")):
        record = json.loads((results / f"{run}.finetune5k.json").read_text())
        assert record["protocol"] == "finetune" and record["data"]["train_size"] == 5000
        assert record["data"]["val_size"] == 10_000
        assert re.search(rf"{re.escape(label)}\s+{100 * record['metrics']['top1']:.2f}\b", card), label


def test_recorded_throughput_is_the_pipelines_formula_on_the_run_records(tmp_path):
    """summary.json's images/s of each published run is ``run_throughput`` of that run's records in weights/, and
    benchmarks/results/fmnist_zoo_h100.json quotes the same figures."""
    bench = json.loads((ROOT / "benchmarks" / "results" / "fmnist_zoo_h100.json").read_text())
    for method in METHODS:
        records, run = ROOT / "weights" / publish.NAMES[method], tmp_path / method
        (run / "export").mkdir(parents=True)
        shutil.copy(records / "metrics.jsonl", run / "metrics.jsonl")
        shutil.copy(records / "train_config.json", run / "export" / "train_config.json")
        measured = fmnist.run_throughput(run)
        assert SUMMARY["runs"][f"{method}_s0"] == pytest.approx(measured, rel=1e-12)
    for name, run in SUMMARY["runs"].items():
        assert run["images_per_s"] == pytest.approx(bench["runs"][name]["images_per_s"], abs=0.05)
        assert run["seconds"] == pytest.approx(bench["runs"][name]["seconds"], abs=0.05)


def test_publish_updates_the_one_manifest_in_format_2_and_keeps_the_aliases(tmp_path):
    assert not (ROOT / "weights" / "manifest.json").exists()  # the registry is clmae/hub/manifest.json alone
    assert publish.card_names(registry.MANIFEST) == {e.name: (e.aliases or (e.name,))[0] for e in registry.entries()}
    manifest = tmp_path / "manifest.json"
    shutil.copy(registry.MANIFEST, manifest)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    (zoo / "summary.json").write_text(json.dumps(SUMMARY))
    before = json.loads(manifest.read_text())
    name = publish.NAMES["mae"]
    shas = {name: {f: f"{i}" * 64 for i, f in enumerate(publish.FILES)}}
    publish.update_manifest(manifest, shas, zoo, 0)
    after = json.loads(manifest.read_text())
    assert after["format"] == 2
    for old, new in zip(before["weights"], after["weights"], strict=True):
        if old["name"] != name:
            assert new == old
            continue
        assert new["aliases"] == old["aliases"] == ["mae_vit_t_fmnist"]
        assert new["files"] == shas[name] and new["status"] == "bundled"
        assert new["metrics"] == old["metrics"]  # recomputed from the same summary: unchanged
    with pytest.raises(ValueError, match="no entry for"):
        publish.update_manifest(manifest, {"vit_tiny_patch4_28.other": shas[name]}, zoo, 0)
