"""`clmae eval` end to end: the result JSON, reproducibility for a seed, the feature cache and the error messages."""

import argparse
import json

import pytest
import torch

from clmae.data import SAMPLE_ROOT, load_fashion_mnist
from clmae.eval import knn_majority_vote, resolve_data, resolve_model, topk_accuracy
from clmae.eval.cache import features_for
from clmae.eval.cli import register
from clmae.eval.data import subset

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = ["model.embed_dim=32", "model.depth=2", "model.num_heads=2"]


def clmae_eval(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="clmae")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["eval", *argv])
    return args.func(args)


def test_knn_result_json_is_complete_and_right(tmp_path, capsys):
    out = tmp_path / "knn.json"
    assert (
        clmae_eval("knn", "--model", "raw-pixels", "--data", "fmnist-sample", "--out", str(out), "seed=3", "device=cpu")
        == 0
    )
    r = json.loads(out.read_text())
    assert r["protocol"] == "knn" and r["seed"] == 3
    assert r["model"]["spec"] == "raw-pixels" and r["data"]["spec"] == "fmnist-sample"
    assert r["data"]["train_size"] == 1000 and r["data"]["val_size"] == 1000 and r["data"]["num_classes"] == 10
    assert r["hparams"]["k"] == 5 and r["hparams"]["k_weighted"] == 20 and r["hparams"]["temperature"] == 0.07
    assert set(r["metrics"]["weighted"]) == {"top1", "top5"} and r["run_time_s"] > 0
    assert r["device"].startswith("cpu") and r["versions"]["torch"] == torch.__version__
    # Independent check: Euclidean ranking is unchanged by the normalisation, so pixels / 255 give the same vote.
    x, y = load_fashion_mnist("train", SAMPLE_ROOT)
    xt, yt = load_fashion_mnist("test", SAMPLE_ROOT)
    votes = knn_majority_vote(x.flatten(1) / 255.0, y, xt.flatten(1) / 255.0, 10, k=5)
    assert r["metrics"]["reference"]["top1"] == topk_accuracy(votes, yt, (1,))["top1"]
    assert "reference top1=" in capsys.readouterr().out


def test_same_seed_same_number(tmp_path):
    def run(name: str, *opts: str) -> dict:
        out = tmp_path / f"{name}.json"
        argv = ["--model", "vit_tiny_patch4_28", "--data", "fmnist-sample", "--out", str(out), *TINY]
        assert (
            clmae_eval(
                "linear",
                *argv,
                "train_limit=300",
                "val_limit=200",
                "epochs=3",
                "warmup_epochs=1",
                "batch_size=64",
                f"cache_dir={tmp_path / 'cache'}",
                "device=cpu",
                *opts,
            )
            == 0
        )
        return json.loads(out.read_text())

    a, b = run("a", "mode=cached", "seed=1"), run("b", "mode=cached", "seed=1")
    assert a["metrics"] == b["metrics"]
    assert not a["features"]["reused"] and b["features"]["reused"]  # the second run read the cache
    c = run("c", "mode=mae", "seed=1", "epochs=1")
    d = run("d", "mode=mae", "seed=1", "epochs=1")
    assert c["metrics"] == d["metrics"]
    assert run("e", "mode=cached", "seed=2")["metrics"]["train_loss"] != a["metrics"]["train_loss"]


def test_raw_pixels_linear_probe_runs_in_both_modes(tmp_path):
    for mode in ("mae", "cached"):
        out = tmp_path / f"{mode}.json"
        argv = ["--model", "raw-pixels", "--data", "fmnist-sample", "--out", str(out), f"mode={mode}", "epochs=1"]
        assert clmae_eval("linear", *argv, "warmup_epochs=0", "val_limit=100") == 0
        assert json.loads(out.read_text())["hparams"]["mode"] == mode


def test_cache_hits_give_the_same_features_and_keys_separate_models(tmp_path):
    data = resolve_data("fmnist-sample")
    tiny = {"embed_dim": 32, "depth": 2, "num_heads": 2}
    m0 = resolve_model("vit_tiny_patch4_28", overrides=tiny, init_seed=0)
    m1 = resolve_model("vit_tiny_patch4_28", overrides=tiny, init_seed=1)
    kw = {"cache_dir": tmp_path, "train_limit": 40, "val_limit": 20}
    a, b, c = features_for(m0, data, **kw), features_for(m0, data, **kw), features_for(m1, data, **kw)
    assert a.cache_file == b.cache_file != c.cache_file
    assert torch.equal(a.train["avg"], b.train["avg"]) and torch.equal(a.val_labels, b.val_labels)
    assert not torch.equal(a.train["avg"], c.train["avg"])
    # The features are the encoder's: class token and mean patch token after the final norm.
    ds = data.dataset("train", lambda img: torch.as_tensor(0), limit=40)
    assert a.train["cls"].shape == (len(ds), 32) and a.train_labels.shape == (40,)


def test_subset_is_fixed_and_ordered():
    ds = list(range(100))
    a, b = subset(ds, 10), subset(ds, 10)
    assert a.indices == b.indices == sorted(a.indices) and len(set(a.indices)) == 10
    assert subset(ds, None) is ds and subset(ds, 500) is ds


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["knn", "--model", "raw-pixels", "--data", "fmnist-sample", "kk=3"], "unknown option 'kk'"),
        (["linear", "--model", "raw-pixels", "--data", "fmnist-sample", "epochs=ten"], "expected int"),
        (["knn", "--model", "raw-pixels", "--data", "fmnist-sample", "k"], "key=value"),
        (["finetune", "--model", "raw-pixels", "--data", "fmnist-sample"], "needs an encoder"),
        (["knn", "--model", "raw-pixels", "--data", "fmnist:/nonexistent"], "apt-get install"),
        (["knn", "--model", "vit_tiny_patch4_29", "--data", "fmnist-sample"], "Did you mean"),
        (["knn", "--model", "raw-pixels", "--data", "fmnist-sample", "variant=all"], "variant must be"),
    ],
)
def test_bad_input_is_explained(argv, message, capsys):
    assert clmae_eval(*argv) == 2
    assert message in capsys.readouterr().err


def test_image_folder_needs_train_and_val(tmp_path, capsys):
    (tmp_path / "train" / "a").mkdir(parents=True)
    assert clmae_eval("knn", "--model", "raw-pixels", "--data", f"imagefolder:{tmp_path}") == 2
    assert "no val folder" in capsys.readouterr().err
