"""A corpus of bad inputs: each gets one clear line (exit code 2, or one exception type), and nothing is written.

Every case runs in-process (``clmae.cli.main`` or the Python API) in an empty working directory and asserts:

* the CLI exits with 2 and prints exactly one non-empty line on stderr, ``clmae CMD: error: ...``, with no traceback;
  an API call raises the expected exception type with a one-line message;
* the message holds the words that name the problem (and, where it matters, not the words of a worse one);
* no file under the working directory, the Hugging Face cache or the clmae cache was created, changed or removed;
* no Hub download was attempted, except by the cases that test the offline cache (and those find nothing).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from _hub_server import go_offline
from conftest import TINY_RUN, tiny_pretrainer
from PIL import Image
from safetensors.torch import load_file, save_file

import clmae
from clmae import cli
from clmae.hub import ChecksumError, UnknownWeightError, registry
from clmae.hub import download as hub_download

pytestmark = pytest.mark.usefixtures("one_thread")

GPU = torch.cuda.is_available()


class Evil:
    """Unpickling it would create a folder: a pickle must never be run."""

    marker = ""

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


@dataclass
class Ctx:
    """What a case's setup may use: the working directory (empty, the cwd) and a tiny weights folder to copy."""

    tmp: Path
    weights: Path
    monkeypatch: pytest.MonkeyPatch

    def folder(self, name: str = "w") -> Path:
        """A copy of the tiny weights folder in the working directory."""
        return Path(shutil.copytree(self.weights, self.tmp / name))

    def images(self, name: str = "imgs", bad: bool = False) -> Path:
        """A folder with one 28x28 image (and a corrupt JPEG when ``bad``)."""
        root = self.tmp / name
        root.mkdir()
        Image.new("L", (28, 28), 128).save(root / "ok.png")
        if bad:
            (root / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF garbage")
        return root

    def eval_folder(self, bad: bool = False) -> Path:
        """An ImageFolder with train/ and val/ of two classes (a corrupt JPEG in val/b when ``bad``)."""
        root = self.tmp / "ev"
        for split in ("train", "val"):
            for cls in ("a", "b"):
                (root / split / cls).mkdir(parents=True)
                Image.new("RGB", (32, 32), (10, 20, 30)).save(root / split / cls / "x.png")
        if bad:
            (root / "val" / "b" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF garbage")
        return root

    def edit_config(self, folder: Path, edit: Callable[[dict], None]) -> Path:
        cfg = json.loads((folder / "config.json").read_text())
        edit(cfg)
        (folder / "config.json").write_text(json.dumps(cfg))
        return folder


@dataclass(frozen=True)
class Case:
    """One bad input.

    Attributes:
        id: the test id.
        setup: makes the inputs and returns the CLI argv (a list) or the API call (a callable).
        words: what the message must contain (case-insensitive).
        error: the exception type of an API call (``None`` for a CLI case).
        absent: what the message must not contain.
        hub: the case may look into the Hub cache (offline); others must never call the Hub.
    """

    id: str
    setup: Callable[[Ctx], Any]
    words: tuple[str, ...]
    error: type[BaseException] | None = None
    absent: tuple[str, ...] = ()
    hub: bool = False


def _evil_checkpoint(ctx: Ctx) -> Path:
    Evil.marker = str(ctx.tmp / "pwned")
    torch.save({"model": {}, "obj": Evil()}, ctx.tmp / "evil.pt")
    return ctx.tmp / "evil.pt"


def _damaged_bundle(ctx: Ctx) -> None:
    """A copy of the bundled CL-MAE weight with one flipped byte inside a tensor, used in place of the package's."""
    entry = registry.find("vit_t_fmnist")
    copy = ctx.tmp / "bundled" / entry.name
    copy.mkdir(parents=True)
    for name in entry.files:
        shutil.copy(registry.bundled_folder(entry) / name, copy / name)
    data = bytearray((copy / "pretraining.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (copy / "pretraining.safetensors").write_bytes(bytes(data))
    ctx.monkeypatch.setattr(registry, "BUNDLED_ROOT", copy.parent)


def _damaged_tensor(ctx: Ctx) -> Path:
    """A weights folder whose model.safetensors has other bytes in tensor blocks.0.attn.qkv.weight (a NaN and a
    changed value; the header is intact)."""
    folder = ctx.folder()
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    header_size = int.from_bytes(data[:8], "little")
    start = 8 + header_size + json.loads(data[8 : 8 + header_size])["blocks.0.attn.qkv.weight"]["data_offsets"][0]
    data[start : start + 8] = b"\x00\x00\xc0\x7f\x00\x00\x80\x3f"  # float32 NaN, 1.0
    path.write_bytes(bytes(data))
    return folder


def _nan_weights(ctx: Ctx) -> Path:
    """A weights folder written by another tool (no clmae metadata) with a NaN in one tensor."""
    folder = ctx.folder()
    state = load_file(folder / "model.safetensors")
    state["blocks.0.attn.qkv.weight"][0, 0] = float("nan")
    save_file(state, folder / "model.safetensors")
    return folder


def _without_weights(folder: Path) -> None:
    """Leave ``config.json`` only: neither the encoder's file nor the whole model's, which would also serve."""
    for name in ("model.safetensors", "pretraining.safetensors"):
        (folder / name).unlink(missing_ok=True)


def _edited_heads(ctx: Ctx) -> Path:
    """num_heads 2 -> 4 in config.json: the model still builds and loads, with other features."""
    return ctx.edit_config(ctx.folder(), lambda c: c["model_args"].update(num_heads=4))


def _truncated(ctx: Ctx) -> Path:
    folder = ctx.folder()
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    return folder


def _recipe(ctx: Ctx) -> Path:
    (ctx.tmp / "r.yaml").write_text("model: vit_tiny_patch4_28\nmodel_kwargs: {depht: 2}\n")
    return ctx.tmp / "r.yaml"


def _checkpoint_with_typo(ctx: Ctx) -> Path:
    config = {"model": "vit_tiny_patch4_28", "model_kwargs": {"depht": 2}}
    torch.save({"model": {}, "config": config}, ctx.tmp / "ckpt.pt")
    return ctx.tmp / "ckpt.pt"


def _training_checkpoint(ctx: Ctx, damage: bool = False) -> Path:
    """A tiny run's checkpoint (``run/checkpoint-0001.pt``), truncated when ``damage``."""
    from clmae.train import TrainConfig, train

    values = {
        "model": "vit_tiny_patch4_28",
        "model_kwargs": TINY_RUN,
        "data": "synthetic:16",
        "epochs": 1,
        "batch_size": 8,
        "out": str(ctx.tmp / "run"),
        "vis_every": 0,
        "export": False,
        "progress": False,
        "device": "cpu",
    }
    train(TrainConfig.from_dict(values))
    path = ctx.tmp / "run" / "checkpoint-0001.pt"
    if damage:
        path.write_bytes(path.read_bytes()[:5000])
    return path


def _offline(ctx: Ctx) -> None:
    go_offline(ctx.monkeypatch)


def _api(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    return lambda: fn(*args, **kwargs)


TRAIN = ["train", "--recipe", "clmae_fmnist_tiny", "device=cpu"]
KNN = ["eval", "knn", "device=cpu"]
TYPO = ("unknown model argument 'depht'", "did you mean depth")
DAMAGED = ("model.safetensors: tensor blocks.0.attn.qkv.weight differs from the sha256 recorded", "damaged")


def _huge(argument: str) -> tuple[str, ...]:
    return (f"model argument {argument} makes", "too large", "of memory (", "free now")


CHECKSUM = ("sha256 of", "pretraining.safetensors", "damaged", "reinstall clmae")

# fmt: off
CASES = [
    # model_kwargs names reach the model through every path, and are checked in one place.
    Case("train-model-kwargs-typo", lambda c: [*TRAIN, "model_kwargs.depht=2"], TYPO),
    Case("train-recipe-model-kwargs-typo", lambda c: ["train", "--recipe", str(_recipe(c)), "device=cpu"], TYPO),
    Case("train-model-kwargs-dict-typo", lambda c: [*TRAIN, "model_kwargs={depht: 2}"], TYPO),
    Case("eval-model-kwargs-typo", lambda c: [*KNN, "--model", "vit_tiny_patch4_28", "--data", "fmnist-sample",
                                              "model_kwargs.depht=2"], TYPO),
    Case("eval-checkpoint-config-typo", lambda c: [*KNN, "--model", str(_checkpoint_with_typo(c)), "--data",
                                                   "fmnist-sample"], TYPO),
    Case("api-create-model-typo", lambda c: _api(clmae.create_model, "vit_tiny_patch4_28", depht=2), TYPO, ValueError),
    Case("api-load-pretrained-typo", lambda c: _api(clmae.load_pretrained, c.folder(), depht=2), TYPO, ValueError),
    Case("api-pretraining-model-typo", lambda c: _api(clmae.create_pretraining_model, "vit_tiny_patch4_28", depht=2),
         TYPO, ValueError),
    # ...and their types and values.
    Case("train-heads-not-dividing-width", lambda c: [*TRAIN, "model_kwargs.num_heads=5"],
         ("num_heads=5", "divisible")),
    Case("train-decoder-depth-not-int", lambda c: [*TRAIN, "model_kwargs.decoder_depth=x"],
         ("model argument decoder_depth='x': expected int",)),
    Case("eval-depth-not-int", lambda c: [*KNN, "--model", "vit_tiny_patch4_28", "--data", "fmnist-sample",
                                          "model_kwargs.depth=x"], ("depth='x'", "expected an int")),
    Case("eval-decoder-argument-for-an-encoder", lambda c: [*KNN, "--model", "vit_tiny_patch4_28", "--data",
         "fmnist-sample", "model_kwargs.decoder_depth=1"], ("decoder_depth", "pretraining model")),
    Case("eval-mlp-ratio-nan", lambda c: [*KNN, "--model", "vit_tiny_patch4_28", "--data", "fmnist-sample",
                                          "model.mlp_ratio=nan"], ("mlp_ratio=nan", "finite")),
    # Names of models, weights and recipes.
    Case("eval-unknown-model", lambda c: [*KNN, "--model", "vit_tinny_patch4_28", "--data", "fmnist-sample"],
         ("unknown model 'vit_tinny_patch4_28'", "did you mean")),
    Case("api-unknown-weight", lambda c: _api(clmae.load_pretrained, "vit_t_fminst"),
         ("unknown pretrained weight 'vit_t_fminst'", "did you mean: vit_t_fmnist"), UnknownWeightError),
    Case("api-not-published", lambda c: _api(clmae.load_pretrained, "vit_b"),
         ("not yet published", "clmae train --recipe"), ValueError, absent=("unknown model",)),
    Case("train-unknown-recipe", lambda c: ["train", "--recipe", "clmae_fmnist_tiyn"],
         ("recipe 'clmae_fmnist_tiyn'", "clmae_fmnist_tiny")),
    Case("train-unknown-architecture", lambda c: [*TRAIN, "model=vit_tiny_patch4_82"],
         ("unknown model 'vit_tiny_patch4_82'", "vit_tiny_patch4_28")),
    # Files that are not weights.
    Case("api-load-pretrained-pth", lambda c: _api(clmae.load_pretrained, str(_evil_checkpoint(c))),
         ("torch checkpoint", "clmae convert", "clmae export", "weights load from a folder"), ValueError),
    Case("api-load-pretrained-missing-pth", lambda c: _api(clmae.load_pretrained, "x.pth"),
         ("no such file x.pth", "clmae convert", "clmae export"), FileNotFoundError),
    Case("extract-pth", lambda c: ["extract", str(_evil_checkpoint(c)), str(c.images()), "o.safetensors"],
         ("torch checkpoint", "clmae convert")),
    Case("api-bare-safetensors", lambda c: _api(clmae.load_pretrained, _bare_safetensors(c)),
         ("bare weights file", "config.json", "arch=NAME"), ValueError),
    Case("eval-pickle-is-not-run", lambda c: [*KNN, "--model", str(_evil_checkpoint(c)), "--data", "fmnist-sample",
         "arch=vit_tiny_patch4_28"], ("cannot be loaded safely", "posix.mkdir", "re-save"),
         absent=("weights_only=false", "if you trust")),
    Case("convert-pickle-is-not-run", lambda c: ["convert", str(_evil_checkpoint(c)), "out"],
         ("cannot be loaded safely",), absent=("weights_only=false",)),
    Case("convert-missing-checkpoint", lambda c: ["convert", "missing.pth", "out"], ("missing.pth", "does not exist")),
    # Damaged or edited weights folders.
    Case("api-truncated-safetensors", lambda c: _api(clmae.load_pretrained, _truncated(c)),
         ("model.safetensors", "truncated or corrupt"), ValueError),
    Case("eval-truncated-safetensors", lambda c: [*KNN, "--model", str(_truncated(c)), "--data", "fmnist-sample"],
         ("model.safetensors", "truncated or corrupt")),
    Case("api-garbage-config", lambda c: _api(clmae.load_pretrained, _garbage_config(c, "{not json")),
         ("config.json is not valid json",), ValueError),
    Case("api-config-not-an-object", lambda c: _api(clmae.load_pretrained, _garbage_config(c, "[1, 2]")),
         ("must hold a json object",), ValueError),
    Case("api-damaged-tensor-bytes", lambda c: _api(clmae.load_pretrained, _damaged_tensor(c)), DAMAGED, ValueError),
    Case("extract-damaged-tensor-bytes", lambda c: ["extract", str(_damaged_tensor(c)), str(c.images()), "o"],
         DAMAGED),
    Case("api-nan-weights-without-metadata", lambda c: _api(clmae.load_pretrained, _nan_weights(c)),
         ("blocks.0.attn.qkv.weight", "non-finite", "model.safetensors"), ValueError),
    Case("eval-nan-weights-without-metadata", lambda c: [*KNN, "--model", str(_nan_weights(c)), "--data",
         "fmnist-sample"], ("blocks.0.attn.qkv.weight", "non-finite")),
    Case("push-damaged-tensor-bytes", lambda c: ["push", str(_damaged_tensor(c)), "org/repo"], DAMAGED),
    Case("push-edited-num-heads", lambda c: ["push", str(_edited_heads(c)), "org/repo"],
         ("model_args.num_heads is 4 in config.json",)),
    Case("eval-folder-without-weights", lambda c: _without_weights(c.folder()) or [*KNN, "--model", "w", "--data",
         "fmnist-sample"], ("w is not a weights folder", "model.safetensors")),
    Case("api-local-dir-missing", lambda c: _api(clmae.load_pretrained, "local-dir:nope"), ("nope is not a folder",),
         FileNotFoundError),
    Case("api-revision-of-a-bundled-weight", lambda c: _api(clmae.load_pretrained, "vit_t_fmnist", revision="main"),
         ("ships inside the package", "drop revision='main'"), ValueError),
    Case("api-edited-num-heads", lambda c: _api(clmae.load_pretrained, _edited_heads(c)),
         ("model_args.num_heads is 4 in config.json, 2 in the weights",), ValueError),
    Case("extract-edited-num-heads", lambda c: ["extract", str(_edited_heads(c)), str(c.images()), "o"],
         ("model_args.num_heads is 4 in config.json",)),
    Case("api-edited-pretraining-config", lambda c: _api(clmae.load_pretraining_model, c.edit_config(
         c.folder(), lambda cfg: cfg["clmae"]["config"].update(masker_num_heads=8))),
         ("clmae.config.masker_num_heads is 8 in config.json, 4 in the weights",), ValueError),
    Case("api-checksum-of-a-registry-weight", lambda c: _api(_after(_damaged_bundle, c), "vit_t_fmnist"), CHECKSUM,
         ChecksumError),
    Case("eval-checksum-of-a-registry-weight", lambda c: _damaged_bundle(c) or [*KNN, "--model", "vit_t_fmnist",
         "--data", "fmnist-sample"], CHECKSUM, absent=("unknown model",)),
    # Hub names: refused before any request; offline, one command that fetches every file.
    Case("api-hub-revision-dot-dot", lambda c: _api(clmae.load_pretrained, "hf-hub:org/repo@../../x"),
         ("revision '../../x'", "not a git branch, tag or commit"), ValueError),
    Case("api-hub-revision-argument", lambda c: _api(clmae.load_pretrained, "hf-hub:org/repo", revision="a b"),
         ("revision 'a b'",), ValueError),
    Case("api-hub-repo-dot-dot", lambda c: _api(clmae.load_pretrained, "hf-hub:../x"),
         ("'../x' is not a valid hub repository id",), ValueError),
    Case("api-hub-repo-double-dash", lambda c: _api(clmae.load_pretrained, "hf-hub:org--a/x"),
         ("not a valid hub repository id",), ValueError),
    Case("api-hub-not-org-repo", lambda c: _api(clmae.load_pretrained, "hf-hub:a/b/c"),
         ("expected hf-hub:org/repo",), ValueError),
    Case("eval-hub-revision-dot-dot", lambda c: [*KNN, "--model", "hf-hub:org/repo@../x", "--data", "fmnist-sample"],
         ("revision '../x'",)),
    Case("api-offline-names-every-file", lambda c: _offline(c) or _api(clmae.load_pretrained, "hf-hub:org/repo"),
         ("hf download org/repo config.json model.safetensors", "snapshot_download"), FileNotFoundError,
         hub=True),
    Case("api-offline-pretraining-names-every-file", lambda c: _offline(c) or _api(clmae.load_pretraining_model,
         "hf-hub:org/repo"), ("config.json pretraining.safetensors",), FileNotFoundError, hub=True),
    Case("extract-offline", lambda c: _offline(c) or ["extract", "hf-hub:org/repo", str(c.images()), "o"],
         ("hf download org/repo config.json model.safetensors",), hub=True),
    # Devices.
    Case("extract-cuda-without-gpu", lambda c: ["extract", "--device", "cuda", str(c.folder()), str(c.images()), "o"],
         ("device=cuda", "no cuda gpu")),
    Case("eval-cuda-without-gpu", lambda c: [*KNN, "--model", "raw-pixels", "--data", "fmnist-sample",
                                             "device=cuda"], ("device=cuda", "no cuda gpu")),
    Case("train-cuda-without-gpu", lambda c: [*TRAIN, "--data", "synthetic:8", "--out", "run", "device=cuda"],
         ("device=cuda", "no cuda gpu")),
    Case("eval-unknown-device", lambda c: [*KNN, "--model", "raw-pixels", "--data", "fmnist-sample", "device=gpu"],
         ("device must be 'auto', 'cpu', 'cuda' or 'cuda:n', got 'gpu'",)),
    # Data.
    Case("eval-corrupt-image", lambda c: [*KNN, "--model", "raw-pixels", "--data", f"imagefolder:{c.eval_folder(True)}",
         "k=1", "k_weighted=1"], ("cannot read image", "bad.jpg")),
    Case("eval-corrupt-image-in-a-worker", lambda c: [*KNN, "--model", "raw-pixels", "--data",
         f"imagefolder:{c.eval_folder(True)}", "k=1", "k_weighted=1", "workers=1"],
         ("cannot read image", "bad.jpg"), absent=("dataloader worker",)),
    Case("extract-corrupt-image-in-a-worker", lambda c: ["extract", "--num-workers", "1", str(c.folder()),
         str(c.images(bad=True)), "o"], ("cannot read image", "bad.jpg"), absent=("dataloader worker",)),
    Case("eval-missing-data-folder", lambda c: [*KNN, "--model", "raw-pixels", "--data", "imagefolder:nope"],
         ("nope is not a folder",)),
    Case("eval-synthetic-data", lambda c: [*KNN, "--model", "raw-pixels", "--data", "synthetic:8"],
         ("synthetic:8", "no labels")),
    Case("extract-no-images", lambda c: ["extract", str(c.folder()), str(c.tmp / "w"), "o"], ("no images",)),
    Case("extract-out-is-a-folder", lambda c: ["extract", str(c.folder()), str(c.images()), str(c.tmp)],
         ("is a folder",)),
    Case("train-synthetic-zero", lambda c: [*TRAIN, "--data", "synthetic:0", "--out", "run"], ("synthetic:0",)),
    Case("train-missing-data-folder", lambda c: [*TRAIN, "--data", "nope", "--out", "run"], ("nope",)),
    # Numbers that make no sense.
    Case("eval-lr-nan", lambda c: ["eval", "linear", "--model", "raw-pixels", "--data", "fmnist-sample",
                                   "base_lr=nan"], ("base_lr='nan'", "finite")),
    Case("eval-temperature-inf", lambda c: [*KNN, "--model", "raw-pixels", "--data", "fmnist-sample",
                                            "temperature=inf"], ("temperature='inf'", "finite")),
    Case("train-epochs-inf", lambda c: [*TRAIN, "epochs=inf"], ("epochs", "inf")),
    Case("train-warmup-nan", lambda c: [*TRAIN, "warmup_epochs=nan"], ("warmup_epochs", "nan")),
    # The run's own folders.
    Case("train-out-is-a-file", lambda c: (c.tmp / "f").write_text("x") and [*TRAIN, "--data", "synthetic:8",
         "--out", "f", "epochs=1"], ("--out f", "is a file")),
    Case("train-empty-data-folder", lambda c: (c.tmp / "empty").mkdir() or [*TRAIN, "--data", "empty", "--out",
         "run", "epochs=1"], ("no images found", "empty")),
    Case("train-resume-damaged-checkpoint", lambda c: [*TRAIN, "--resume", str(_training_checkpoint(c, True)),
         "--out", "run"], ("checkpoint-0001.pt", "corrupt", "older checkpoint")),
    Case("export-damaged-checkpoint", lambda c: ["export", str(_training_checkpoint(c, True)), "out"],
         ("checkpoint-0001.pt", "corrupt")),
    Case("convert-training-checkpoint", lambda c: ["convert", str(_training_checkpoint(c)), "out"],
         ("clmae training checkpoint", "clmae export")),
    Case("train-init-unknown-weights", lambda c: [*TRAIN, "--data", "synthetic:8", "--out", "run",
         "init=vit_t_fminst"], ("vit_t_fminst",)),
    Case("train-init-other-width", lambda c: [*TRAIN, "--data", "synthetic:8", "--out", "run", "init=vit_t_fmnist",
         "model_kwargs.embed_dim=32", "model_kwargs.num_heads=2"], ("do not match", "init=")),
    Case("train-init-pretraining-of-another-size", lambda c: [*TRAIN, "--data", "synthetic:8", "--out", "run",
         f"init=pretraining:{c.folder()}", "model_kwargs.img_size=32"], ("do not match", "init=")),
    Case("train-missing-shard", lambda c: [*TRAIN, "--data", "wds:shards/train-{000..003}.tar", "--out", "run"],
         ("train-000.tar",)),
    Case("train-unknown-data-form", lambda c: [*TRAIN, "--data", "s3://bucket/train", "--out", "run"],
         ("unknown data form 's3'", "wds:")),
    Case("train-bad-brace-range", lambda c: [*TRAIN, "--data", "wds:shards/train-{}.tar", "--out", "run"],
         ("{}",)),
    Case("train-save-every-steps-negative", lambda c: [*TRAIN, "save_every_steps=-1"], ("save_every_steps", ">= 0")),
    Case("api-save-pretrained-into-a-file", lambda c: (c.tmp / "f").write_text("x") and _api(
         clmae.save_pretrained, tiny_pretrainer(), c.tmp / "f"), ("is a file, not a folder",), ValueError),
    Case("api-wrong-channels", lambda c: _api(clmae.check_input, clmae.load_pretrained(c.folder()),
         torch.zeros(2, 3, 28, 28)), ("1 channel", "got 3"), ValueError),
    Case("api-wrong-size", lambda c: _api(clmae.check_input, clmae.load_pretrained(c.folder()),
         torch.zeros(2, 1, 32, 32)), ("28x28", "got 32x32", "img_size"), ValueError),
    # Sizes that would not fit memory: refused before anything is allocated, by name.
    Case("api-create-model-depth-huge", lambda c: _api(clmae.create_model, "vit_tiny_patch4_28", depth=10**6),
         _huge("depth=1000000"), ValueError),
    Case("api-create-model-width-huge", lambda c: _api(clmae.create_model, "vit_tiny_patch4_28", embed_dim=10**9,
         num_heads=1), _huge("embed_dim=1000000000"), ValueError),
    Case("api-create-model-image-huge", lambda c: _api(clmae.create_model, "vit_tiny_patch4_28", img_size=10**6,
         patch_size=1), _huge("img_size=1000000"), ValueError),
    Case("api-pretraining-decoder-depth-huge", lambda c: _api(clmae.create_pretraining_model, "vit_tiny_patch4_28",
         decoder_depth=10**6), _huge("decoder_depth=1000000"), ValueError),
    Case("api-pretraining-masker-mlp-huge", lambda c: _api(clmae.create_pretraining_model, "vit_tiny_patch4_28",
         masker_mlp_ratio=1e9), _huge("masker_mlp_ratio=1000000000.0"), ValueError),
    Case("api-load-pretrained-depth-huge", lambda c: _api(clmae.load_pretrained, c.folder(), depth=10**6),
         _huge("depth=1000000"), ValueError),
    Case("train-depth-huge", lambda c: [*TRAIN, "--data", "synthetic:8", "--out", "run",
         "model_kwargs.depth=1000000"], _huge("depth=1000000")),
    Case("eval-width-huge", lambda c: [*KNN, "--model", "vit_tiny_patch4_28", "--data", "fmnist-sample",
         "model_kwargs.embed_dim=1000000000", "model_kwargs.num_heads=1"], _huge("embed_dim=1000000000")),
    # Outputs that would land inside the inputs, and empty paths (an unset variable).
    Case("train-out-inside-data", lambda c: [*TRAIN, "--data", str(c.images()), "--out", "imgs/run"],
         ("--out imgs/run", "inside the data folder", "read back")),
    Case("train-out-is-the-data", lambda c: [*TRAIN, "--data", f"imagefolder:{c.images()}", "--out", "imgs"],
         ("--out imgs is the data folder",)),
    Case("train-out-inside-data-through-a-link", lambda c: os.symlink(c.images(), c.tmp / "ln") or [*TRAIN, "--data",
         "ln", "--out", "imgs/run"], ("inside the data folder",)),
    Case("train-out-empty", lambda c: [*TRAIN, "--data", "synthetic:8", "--out", ""], ("--out is empty",)),
    Case("train-data-empty", lambda c: [*TRAIN, "--data", "", "--out", "run"], ("data spec", "''")),
    Case("extract-out-inside-images", lambda c: ["extract", str(c.folder()), str(c.images()), "imgs/f.safetensors"],
         ("output imgs/f.safetensors is inside the data folder",)),
    Case("extract-out-empty", lambda c: ["extract", str(c.folder()), str(c.images()), ""], ("output is empty",)),
    Case("extract-images-empty", lambda c: ["extract", str(c.folder()), "", "o"], ("images folder is empty",)),
    Case("extract-unknown-option", lambda c: ["extract", str(c.folder()), str(c.images()), "o", "skip_unreadabel=1"],
         ("unknown option skip_unreadabel", "skip_unreadable")),
    Case("export-out-empty", lambda c: ["export", str(_training_checkpoint(c)), ""], ("weights folder is empty",)),
    Case("demo-out-empty", lambda c: ["demo", "--out", ""], ("--out is empty",)),
    Case("demo-train-epochs-negative", lambda c: ["demo", "--train", "--epochs", "-1"], ("--epochs", ">= 1", "-1")),
    Case("demo-train-batch-size-zero", lambda c: ["demo", "--train", "--batch-size", "0"], ("--batch-size", ">= 1")),
    Case("demo-train-batch-size-too-large", lambda c: ["demo", "--train", "--batch-size", "5000"],
         ("--batch-size 5000", "1000 training images")),
    Case("demo-train-lr-nan", lambda c: ["demo", "--train", "--lr", "nan"], ("--lr", "finite")),
    # Files and names that are not what the command expects.
    Case("visualize-a-folder", lambda c: ["visualize", str(c.folder())], ("is a folder, not a checkpoint file",),
         absent=("does not exist",)),
    Case("visualize-a-run-folder", lambda c: _training_checkpoint(c) and ["visualize", "run"],
         ("run is a folder", "e.g. run/checkpoint-0001.pt")),
    Case("convert-clmae-weights", lambda c: ["convert", str(c.folder() / "model.safetensors"), "out"],
         ("already clmae weights", "nothing to convert", "load_pretrained"), absent=("num_heads",)),
    Case("convert-bare-safetensors", lambda c: ["convert", str(_bare_safetensors(c)), "out"],
         ("safetensors weights file, not a torch checkpoint",)),
    Case("api-create-model-not-a-name", lambda c: _api(clmae.create_model, 123), ("name must be", "got 123 (int)"),
         TypeError),
    Case("api-pretraining-model-of-an-encoder-folder", lambda c: (c.folder() / "pretraining.safetensors").unlink()
         or _api(clmae.load_pretraining_model, c.tmp / "w"), ("has no pretraining.safetensors", "encoder only"),
         FileNotFoundError, absent=("holds config.json and model.safetensors",)),
    Case("api-registry-name-dot-dot", lambda c: _manifest(c, name="../../x.evil") and _api(clmae.load_pretrained,
         "evil"), ("'../../x.evil'", "outside the package"), ValueError),
    Case("api-registry-file-dot-dot", lambda c: _manifest(c, files={"config.json": "0" * 64, "model.safetensors":
         "0" * 64, "../../escape.bin": "0" * 64}) and _api(clmae.load_pretrained, "x.evil"),
         ("'../../escape.bin'", "outside the package"), ValueError),
    Case("api-hub-without-network", lambda c: _no_network(c) or _api(clmae.load_pretrained, "hf-hub:org/repo"),
         ("cannot be reached", "HF_HUB_OFFLINE=1", "hf download org/repo config.json model.safetensors"),
         FileNotFoundError, hub=True),
]
# fmt: on


def _manifest(ctx: Ctx, name: str = "x.evil", files: dict | None = None) -> Path:
    """A weights manifest with one bundled entry, used in place of the package's."""
    files = files or {"config.json": "0" * 64, "model.safetensors": "0" * 64}
    entry = {
        "name": name,
        "aliases": [],
        "method": "clmae",
        "arch": "vit_tiny_patch4_28",
        "hub_repo": None,
        "revision": None,
        "files": files,
        "status": "bundled",
    }
    path = ctx.tmp / "manifest.json"
    path.write_text(json.dumps({"weights": [entry]}))
    ctx.monkeypatch.setenv("CLMAE_WEIGHTS_MANIFEST", str(path))
    return path


def _no_network(ctx: Ctx) -> None:
    """No network and no HF_HUB_OFFLINE: the Hub endpoint refuses connections (a closed local port)."""
    from huggingface_hub import constants

    ctx.monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    ctx.monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    ctx.monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    ctx.monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", "http://127.0.0.1:9/{repo_id}/resolve/{revision}/{filename}"
    )
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        ctx.monkeypatch.delenv(key, raising=False)


def _after(setup: Callable[[Ctx], Any], ctx: Ctx) -> Callable[..., Any]:
    setup(ctx)
    return clmae.load_pretrained


def _bare_safetensors(ctx: Ctx) -> Path:
    folder = ctx.folder()
    return Path(shutil.move(folder / "model.safetensors", ctx.tmp / "encoder.safetensors"))


def _garbage_config(ctx: Ctx, text: str) -> Path:
    folder = ctx.folder()
    (folder / "config.json").write_text(text)
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """A tiny CL-MAE saved with save_pretrained (encoder and pretraining files)."""
    return clmae.save_pretrained(tiny_pretrainer(seed=4).eval(), tmp_path_factory.mktemp("weights") / "w")


def _snapshot(*roots: Path) -> dict[str, tuple[int, int, int]]:
    """Every path under ``roots``: files with their mode, size and modification time, folders with their mode (a
    folder that a command created and removed again leaves nothing behind)."""
    out = {}
    for root in roots:
        for path in [root, *root.rglob("*")] if root.exists() else []:
            st = path.lstat()
            out[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns) if path.is_file() else (st.st_mode, 0, 0)
    return out


def test_the_corpus_has_unique_ids_and_covers_every_command():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))
    commands = {c.id.split("-")[0] for c in CASES}
    assert {"train", "eval", "extract", "convert", "export", "demo", "visualize", "api"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_clear_line_and_writes_nothing(case, weights, tmp_path, monkeypatch, capsys):
    if GPU and "cuda-without-gpu" in case.id:
        pytest.skip("a GPU is present")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    if not case.hub:

        def no_download(*args, **kwargs):
            raise AssertionError(f"a Hub download was attempted: {args}")

        monkeypatch.setattr(hub_download, "hf_hub_download", no_download)
    call = case.setup(Ctx(work, weights, monkeypatch))
    caches = [Path(os.environ["HF_HOME"]), Path(os.environ["CLMAE_CACHE"])]
    before = _snapshot(work, *caches)
    capsys.readouterr()

    if case.error is None:
        assert isinstance(call, list), "a CLI case returns its argv"
        code = cli.main(call)
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if line.strip()]
        command = call[0] if call[0] != "eval" else f"eval {call[1]}"
        assert code == 2, err
        assert len(lines) == 1, err
        assert lines[0].startswith(f"clmae {command}: error: "), err
        assert "Traceback" not in err
        message = lines[0]
    else:
        with pytest.raises(case.error) as info:
            call()
        message = str(info.value)
        assert "\n" not in message.strip(), message
    for word in case.words:
        assert word.lower() in message.lower(), f"{word!r} not in: {message}"
    for word in case.absent:
        assert word.lower() not in message.lower(), f"{word!r} in: {message}"
    after = _snapshot(work, *caches)
    changed = sorted(p for p in before.keys() | after.keys() if before.get(p) != after.get(p))
    assert not changed, f"a bad input created, changed or removed: {changed}"
