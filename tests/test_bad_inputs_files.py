"""Bad inputs about files: foreign files in a command's target (refused, nothing changed, ``--overwrite`` replaces
the target whole), patterns and YAML/JSON that would expand without bound, malformed metadata files, integer weights
and files that are no torch checkpoint. Each bad input gets one line naming the file and the field (exit code 2, no
traceback) and writes nothing: the cases run through :mod:`test_bad_inputs`' own check."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import test_bad_inputs as corpus
import torch
from conftest import tiny_pretrainer
from PIL import Image
from safetensors.torch import load_file, save_file
from test_bad_inputs import TRAIN, Case, Ctx, _manifest, _snapshot, _training_checkpoint

import clmae
from clmae import cli
from clmae.data.webdataset import MAX_SHARD_NAMES, expand_braces
from clmae.hub import save_vitmae

pytestmark = pytest.mark.usefixtures("one_thread")

EXTRACT = ["extract"]


def _vitmae(ctx: Ctx, edit: dict | None = None) -> Path:
    """A transformers ViTMAE folder of the tiny weights (its config.json edited by ``edit``)."""
    folder = ctx.tmp / "vit"
    save_vitmae(clmae.load_pretraining_model(str(ctx.weights)), folder)
    if edit:
        cfg = json.loads((folder / "config.json").read_text())
        cfg.update(edit)
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def _extract_with(folder: Path, ctx: Ctx) -> list[str]:
    return ["extract", str(folder), str(ctx.images()), "o.safetensors", "--quiet"]


def _config(ctx: Ctx, edit: Callable[[dict], None]) -> list[str]:
    return _extract_with(ctx.edit_config(ctx.folder(), edit), ctx)


def _model_args(**values) -> Callable[[dict], None]:
    return lambda cfg: cfg["model_args"].update(values)


def _raw_config(ctx: Ctx, text: str) -> list[str]:
    folder = ctx.folder()
    (folder / "config.json").write_text(text)
    return _extract_with(folder, ctx)


def _manifest_text(ctx: Ctx, value) -> list[str]:
    path = ctx.tmp / "manifest.json"
    path.write_text(json.dumps(value))
    ctx.monkeypatch.setenv("CLMAE_WEIGHTS_MANIFEST", str(path))
    return ["extract", "x.evil", str(ctx.images()), "o.safetensors"]


def _hfds(ctx: Ctx, info: str) -> list[str]:
    folder = ctx.tmp / "hf"
    folder.mkdir()
    (folder / "dataset_info.json").write_text(info)
    (folder / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    return [*TRAIN, "--data", f"hfds:{folder}", "--out", "run"]


def _recipe(ctx: Ctx, text: str, suffix: str = ".yaml") -> list[str]:
    path = ctx.tmp / f"r{suffix}"
    path.write_text(text)
    return ["train", "--recipe", str(path), "--data", "synthetic:8", "--out", "run", "device=cpu"]


def _laughs() -> str:
    """A 'billion laughs' YAML: nine levels of nine aliases each (9**9 strings if expanded)."""
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


def _int8(ctx: Ctx) -> list[str]:
    folder = ctx.folder()
    state = load_file(folder / "model.safetensors")
    state["blocks.0.attn.qkv.weight"] = state["blocks.0.attn.qkv.weight"].to(torch.int8)
    save_file(state, folder / "model.safetensors")  # no clmae metadata: as another tool would write it
    (folder / "pretraining.safetensors").unlink()
    return _extract_with(folder, ctx)


def _text_pth(ctx: Ctx) -> Path:
    path = ctx.tmp / "notes.pth"
    path.write_text("these are my notes, not a checkpoint\n")
    return path


WDS = [*TRAIN, "--out", "run", "--data"]
DEEP = 100_000
CONFIG_FIELD = ("config.json: field",)
NOT_CKPT = ("notes.pth is not a torch checkpoint", "neither as the zip archive")

# fmt: off
CASES = [
    # Malformed timm / clmae config.json
    Case("extract-config-architecture-a-number", lambda c: _config(c, lambda cfg: cfg.update(architecture=123)),
         (*CONFIG_FIELD, "architecture", "got 123")),
    Case("extract-config-img-size-one-number-in-a-list", lambda c: _config(c, _model_args(img_size=[28])),
         (*CONFIG_FIELD, "model_args.img_size", "[height, width]")),
    Case("extract-config-clmae-a-list", lambda c: _config(c, lambda cfg: cfg.update(clmae=[1, 2])),
         (*CONFIG_FIELD, "clmae must be a json object", "[1, 2]")),
    Case("extract-config-zero-heads", lambda c: _config(c, _model_args(num_heads=0)),
         (*CONFIG_FIELD, "model_args.num_heads", "positive integer")),
    Case("extract-config-input-size-two-numbers", lambda c: _config(
         c, lambda cfg: cfg["pretrained_cfg"].update(input_size=[28, 28])),
         (*CONFIG_FIELD, "pretrained_cfg.input_size")),
    Case("extract-config-nested-100000-deep", lambda c: _raw_config(c, "[" * DEEP + "]" * DEEP),
         ("config.json", "nested more than 100 levels")),
    Case("extract-config-huge-integer", lambda c: _raw_config(c, '{"architecture": ' + "9" * 5000 + "}"),
         ("config.json", "not valid json")),
    # Malformed ViTMAE config.json
    Case("convert-vitmae-zero-heads", lambda c: ["convert", str(_vitmae(c, {"num_attention_heads": 0})), "out"],
         (*CONFIG_FIELD, "num_attention_heads", "got 0")),
    Case("convert-vitmae-zero-hidden-size", lambda c: ["convert", str(_vitmae(c, {"hidden_size": 0})), "out"],
         (*CONFIG_FIELD, "hidden_size", "got 0")),
    Case("extract-vitmae-zero-heads", lambda c: _extract_with(_vitmae(c, {"num_attention_heads": 0}), c),
         (*CONFIG_FIELD, "num_attention_heads")),
    Case("extract-vitmae-image-size-a-string", lambda c: _extract_with(_vitmae(c, {"image_size": "big"}), c),
         (*CONFIG_FIELD, "image_size")),
    Case("extract-vitmae-clmae-a-list", lambda c: _extract_with(_vitmae(c, {"clmae": [1, 2]}), c),
         (*CONFIG_FIELD, "clmae")),
    # Malformed manifests
    Case("extract-manifest-a-list", lambda c: _manifest_text(c, [1, 2]),
         ("manifest.json", "field 'weights'", "got a list")),
    Case("extract-manifest-weights-an-object", lambda c: _manifest_text(c, {"weights": {"a": 1}}),
         ("manifest.json", "field 'weights'", "got a dict")),
    Case("extract-manifest-files-a-list", lambda c: _manifest(c, files=["config.json", "model.safetensors"]) and [
         "extract", "x.evil", str(c.images()), "o.safetensors"], ("manifest.json", "field 'files'")),
    Case("extract-manifest-entry-a-number", lambda c: _manifest_text(c, {"weights": [7]}),
         ("manifest.json", "each entry of field 'weights'")),
    # Malformed dataset_info.json of an hfds: folder
    Case("train-hfds-garbage-dataset-info", lambda c: _hfds(c, "\x00garbage{"), ("dataset_info.json",)),
    Case("train-hfds-dataset-info-a-list", lambda c: _hfds(c, "[1, 2]"),
         ("dataset_info.json", "must hold a json object")),
    Case("train-hfds-dataset-info-features-a-string", lambda c: _hfds(c, '{"features": "image"}'),
         ("dataset_info.json", "field features")),
    # Recipes and options: bounded YAML / JSON
    Case("train-recipe-nested-100000-deep", lambda c: _recipe(c, "a: " + "[" * DEEP + "]" * DEEP + "\n"),
         ("r.yaml", "nested more than 100 levels")),
    Case("train-recipe-block-nested-100000-deep", lambda c: _recipe(c, "- " * DEEP + "x\n"),
         ("r.yaml", "nested more than 100 levels")),
    Case("train-recipe-json-nested-100000-deep", lambda c: _recipe(c, "[" * DEEP + "]" * DEEP, ".json"),
         ("r.json", "nested more than 100 levels")),
    Case("train-recipe-billion-laughs", lambda c: _recipe(c, _laughs()), ("r.yaml", "aliases", "not accepted")),
    Case("train-recipe-integer-model-kwargs-key", lambda c: _recipe(
         c, "model: vit_tiny_patch4_28\nmodel_kwargs: {1: 2}\n"), ("r.yaml", "field model_kwargs", "key 1")),
    Case("train-option-integer-model-kwargs-key", lambda c: [*TRAIN, "--data", "synthetic:8", "--out", "run",
         "model_kwargs={1: 2}"], ("model_kwargs", "key 1")),
    Case("train-recipe-duplicate-key", lambda c: _recipe(c, "epochs: 1\nepochs: 2\n"),
         ("r.yaml", "'epochs' appears twice (line 2)", "keep one")),
    Case("train-option-aliases", lambda c: [*TRAIN, "--data", "synthetic:8", "--out", "run",
         "model_kwargs={a: &x [1], b: *x}"], ("aliases", "not accepted")),
    # Shard patterns: counted before they are built
    Case("train-wds-billion-names", lambda c: [*WDS, "wds:s-{0..999999999}.tar"],
         ("more than 100,000 names", "s-{0..999999999}.tar")),
    Case("train-wds-26-lists", lambda c: [*WDS, "wds:" + "{a,b}" * 26 + ".tar"], ("more than 100,000 names",)),
    Case("train-wds-5000-digit-bound", lambda c: [*WDS, "wds:{0.." + "9" * 5000 + "}.tar"],
         ("more than 100,000 names",)),
    Case("train-wds-2000-groups", lambda c: [*WDS, "wds:" + "{a}" * 2000 + ".tar"], ("2000 brace pairs",)),
    Case("train-wds-braces-1000-deep", lambda c: [*WDS, "wds:" + "{a," * 1000 + "b" + "}" * 1000],
         ("nested 1000 deep",)),
    Case("api-expand-braces-huge", lambda c: corpus._api(expand_braces, "{0..99}{0..99}{0..99}"),
         ("more than 100,000 names",), ValueError),
    # Integer weights and files that are no torch checkpoint
    Case("extract-int8-weights", _int8, ("blocks.0.attn.qkv.weight", "int8", "float32", "dequantize")),
    Case("api-int8-weights", lambda c: _int8(c) and corpus._api(clmae.load_pretrained, str(c.tmp / "w")),
         ("blocks.0.attn.qkv.weight", "int8"), ValueError),
    Case("convert-text-pth", lambda c: ["convert", str(_text_pth(c)), "out"], NOT_CKPT),
    Case("export-text-pth", lambda c: ["export", str(_text_pth(c)), "out"], NOT_CKPT),
    Case("export-transformers-text-pth", lambda c: ["export", str(_text_pth(c)), "out", "--format", "transformers"],
         NOT_CKPT),
    Case("visualize-text-pth", lambda c: ["visualize", str(_text_pth(c))], NOT_CKPT),
    Case("eval-knn-text-pth", lambda c: [*corpus.KNN, "--model", str(_text_pth(c)), "--data", "fmnist-sample"],
         NOT_CKPT),
    Case("api-load-text-pth", lambda c: corpus._api(clmae.load_pretrained, str(_text_pth(c))),
         ("notes.pth",), ValueError, absent=("unpickl", "weights_only")),
]
# fmt: on


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny CL-MAE saved with save_pretrained (as test_bad_inputs' fixture of the same name)."""
    return clmae.save_pretrained(tiny_pretrainer(seed=4).eval(), tmp_path_factory.mktemp("weights") / "w")


def test_the_limits_are_as_documented():
    docs = (Path(__file__).parents[1] / "docs" / "data.md").read_text()
    assert MAX_SHARD_NAMES == 100_000 and "100,000" in docs
    assert len(expand_braces("{0..99}{0..99}{0..9}")) == 100_000  # the limit itself is accepted


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_file_input_gets_one_line_and_writes_nothing(case, weights, tmp_path, monkeypatch, capsys):
    corpus.test_bad_input_gets_one_clear_line_and_writes_nothing(case, weights, tmp_path, monkeypatch, capsys)


# --- Foreign files in a command's target ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny run's checkpoint, trained once for the module."""
    root = tmp_path_factory.mktemp("ckpt")
    return _training_checkpoint(Ctx(root, Path(), pytest.MonkeyPatch()))


def _foreign_png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (1, 2, 3)).save(path)  # a user's own picture: no clmae mark


def _user_readme(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.md").write_text("# my own notes\n")


WEIGHTS_FILES = {"config.json", "model.safetensors", "pretraining.safetensors", "README.md", "train_config.json"}
VITMAE_FILES = {"config.json", "model.safetensors", "preprocessor_config.json"}


def _target_cases(work: Path, weights: Path, checkpoint: Path):
    """(id, argv, target, set up the foreign content, files expected after --overwrite or None for one file)."""
    images = work / "imgs"
    images.mkdir()
    Image.new("L", (28, 28), 100).save(images / "a.png")
    ev = work / "ev"
    for split in ("train", "val"):
        for cls in ("a", "b"):
            (ev / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8), (10, 20, 30)).save(ev / split / cls / "x.png")
    ckpt = Path(shutil.copy(checkpoint, work / "checkpoint-0001.pt"))
    w = Path(shutil.copytree(weights, work / "w"))
    vit = save_vitmae(clmae.load_pretraining_model(str(w)), work / "vit")
    knn = ["eval", "knn", "--model", "raw-pixels", "--data", f"imagefolder:{ev}", "device=cpu", "cache=false", "k=1",
           "k_weighted=1", "--out"]  # fmt: skip

    def transformers_export(folder: Path) -> None:
        assert cli.main(["export", str(w), str(folder), "--format", "transformers"]) == 0

    return [
        ("extract", ["extract", str(w), str(images), "f.safetensors", "--quiet"], work / "f.safetensors",
         lambda t: t.write_text("my thesis\n"), None),
        ("extract-other-safetensors", ["extract", str(w), str(images), "f.safetensors", "--quiet"],
         work / "f.safetensors", lambda t: save_file({"x": torch.ones(2)}, t), None),
        ("eval", [*knn, "r.json"], work / "r.json", lambda t: t.write_text('{"my": "notes"}'), None),
        ("export", ["export", str(ckpt), "exp"], work / "exp", _user_readme, WEIGHTS_FILES),
        ("export-transformers", ["export", str(w), "exp", "--format", "transformers"], work / "exp", _user_readme,
         VITMAE_FILES),
        ("export-over-a-transformers-export", ["export", str(ckpt), "exp"], work / "exp", transformers_export,
         WEIGHTS_FILES),
        ("export-transformers-over-a-clmae-export", ["export", str(ckpt), "exp", "--format", "transformers"],
         work / "exp", lambda t: shutil.copytree(w, t), VITMAE_FILES),
        ("convert", ["convert", str(vit), "conv"], work / "conv", _user_readme,
         {"config.json", "model.safetensors", "pretraining.safetensors", "README.md"}),
        ("visualize", ["visualize", str(ckpt), "--out", "pics"], work / "pics" / "masks-checkpoint-0001.png",
         _foreign_png, None),
    ]  # fmt: skip


def _case(which, tmp_path, monkeypatch, weights, checkpoint):
    """The working folder (made the current one) and the target case ``which`` of :func:`_target_cases` in it."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work, next(c for c in _target_cases(work, weights, checkpoint) if c[0] == which)


CASE_IDS = ["extract", "extract-other-safetensors", "eval", "export", "export-transformers",
            "export-over-a-transformers-export", "export-transformers-over-a-clmae-export", "convert",
            "visualize"]  # fmt: skip


@pytest.mark.parametrize("which", CASE_IDS)
def test_foreign_files_in_a_target_are_refused_and_overwrite_replaces_them(
    which,
    weights,
    checkpoint,
    tmp_path,
    monkeypatch,
    capsys,
):
    work, (_, argv, target, foreign, expected) = _case(which, tmp_path, monkeypatch, weights, checkpoint)
    foreign(target)
    before = _snapshot(work)
    capsys.readouterr()

    code = cli.main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert str(target) in err[0] or target.name in err[0], err
    assert "--overwrite" in err[0] and "Traceback" not in err[0]
    assert _snapshot(work) == before, "a refused command changed the target"

    assert cli.main([*argv, "--overwrite"]) == 0, capsys.readouterr().err
    if expected is None:  # a file: replaced by the command's own output
        if target.suffix == ".safetensors":
            assert set(load_file(target)) == {"pooled"}
        elif target.suffix == ".json":
            assert json.loads(target.read_text())["protocol"] == "knn"
        else:
            with Image.open(target) as image:
                assert image.text.get("Software") == "clmae visualize" and image.size != (4, 4)
    else:  # a folder: replaced as a whole, nothing of the earlier content mixed in
        assert {p.name for p in target.iterdir()} == expected
        if (target / "README.md").exists():
            assert "my own notes" not in (target / "README.md").read_text()
        if "preprocessor_config.json" in expected:
            assert json.loads((target / "config.json").read_text())["model_type"] == "vit_mae"
        else:
            clmae.load_pretrained(str(target))  # loads: no mixed folder
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")], "a temporary was left behind"


@pytest.mark.parametrize("which", ["extract", "eval", "visualize", "export-transformers"])
def test_an_earlier_result_of_the_same_command_is_replaced_without_overwrite(
    which,
    weights,
    checkpoint,
    tmp_path,
    monkeypatch,
    capsys,
):
    _, (_, argv, target, _, _) = _case(which, tmp_path, monkeypatch, weights, checkpoint)
    assert cli.main(argv) == 0, capsys.readouterr().err
    first = _snapshot(target.parent)
    assert cli.main(argv) == 0, capsys.readouterr().err
    assert target.exists() and set(_snapshot(target.parent)) == set(first)
