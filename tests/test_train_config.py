import dataclasses
import json
import re
from pathlib import Path

import pytest

from clmae.train.config import (
    TrainConfig,
    apply_overrides,
    list_recipes,
    load_recipe,
    resolve_config,
    resumable_fields,
)


@pytest.mark.slow
def test_shipped_recipes_follow_the_method():
    assert {"clmae_vit_b16_in1k", "mae_vit_b16_in1k", "clmae_fmnist_tiny"} <= set(list_recipes())
    # docs/method.md §6: the reference CL-MAE script.
    ref = resolve_config("clmae_vit_b16_in1k")
    assert (ref.model, ref.method, ref.base_lr, ref.epochs, ref.warmup_epochs) == (
        "vit_base_patch16_224",
        "clmae",
        1e-3,
        200,
        40,
    )
    assert (ref.batch_size, ref.mask_ratio, ref.norm_pix_loss, ref.weight_decay, ref.betas) == (
        256,
        0.75,
        False,
        0.05,
        (0.9, 0.95),
    )
    # MAE's ImageNet recipe: blr 1.5e-4, batch 4096, 800 epochs, 40 warm-up, norm_pix_loss.
    mae = resolve_config("mae_vit_b16_in1k")
    assert (mae.method, mae.base_lr, mae.global_batch, mae.epochs, mae.warmup_epochs, mae.norm_pix_loss) == (
        "mae",
        1.5e-4,
        4096,
        800,
        40,
        True,
    )
    tiny = resolve_config("clmae_fmnist_tiny")
    assert tiny.model == "vit_tiny_patch4_28" and tiny.data.startswith("fmnist")
    assert load_recipe("clmae_fmnist_tiny")["recipe"] == "clmae_fmnist_tiny"


def test_layers_and_typed_overrides():
    cfg = resolve_config(
        "clmae_fmnist_tiny",
        [
            "epochs=3",
            "base_lr=1e-4",
            "betas=0.8,0.9",
            "amp=false",
            "lr=none",
            "model_kwargs.depth=2",
            "model_kwargs.drop_path_rate=1e-1",
            "global_batch=200",
        ],
        method="mae",
        data=None,  # None: keep the recipe's
    )
    assert (cfg.epochs, cfg.base_lr, cfg.betas, cfg.amp, cfg.lr, cfg.method) == (
        3,
        1e-4,
        (0.8, 0.9),
        False,
        None,
        "mae",
    )
    # the recipe's mask_ratio / norm_pix_loss are short for model arguments: they live in model_kwargs only
    assert cfg.model_kwargs == {"mask_ratio": 0.75, "norm_pix_loss": False, "depth": 2, "drop_path_rate": 0.1}
    assert cfg.data == "fmnist-sample"
    assert isinstance(cfg.epochs, int) and cfg.global_batch == 200
    # to_dict is plain data and round-trips
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d and TrainConfig.from_dict(d) == cfg


def test_recipe_files(tmp_path):
    (tmp_path / "r.json").write_text(json.dumps({"epochs": 7, "base_lr": "2e-3"}))
    (tmp_path / "r.yaml").write_text("epochs: 5\nbase_lr: 1e-3\n")  # YAML 1.1 reads 1e-3 as a string: coerced
    assert resolve_config(str(tmp_path / "r.json")).base_lr == 2e-3
    cfg = resolve_config(str(tmp_path / "r.yaml"))
    assert (cfg.epochs, cfg.base_lr, cfg.recipe) == (5, 1e-3, "r")
    (tmp_path / "bad.yaml").write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_recipe(str(tmp_path / "bad.yaml"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["epoch=3"], "unknown option 'epoch'.*Did you mean: epochs"),
        (["epochs=three"], "epochs='three': expected int"),
        (["epochs=2.5"], "epochs='2.5': expected int"),
        (["amp=maybe"], "amp='maybe': expected bool"),
        (["model_kwargs.dpeth=2"], r"unknown model argument 'dpeth' \(did you mean depth"),
        (["model.dpeth=2"], r"unknown model argument 'dpeth'"),
        (["model_kwargs.method=mae"], "not as model_kwargs.method"),
        (["model_kwargs.mask_ratio=1.0"], r"mask_ratio must be in \(0, 1\)"),
        (["norm_pix_loss=maybe"], "norm_pix_loss='maybe': expected bool"),
        (["num_workers=-1"], "num_workers must be >= 0, got -1"),
        (["vis_images=0"], "vis_images must be >= 1, got 0"),
        (["epoch_size=0"], r"epoch_size must be >= 1 \(or none for the whole data set\), got 0"),
        (["term_grace=nan"], "term_grace='nan': expected a finite number"),
        (["min_lr=-1e-5"], "min_lr must be >= 0"),
        (["decode=gpu"], "decode must be one of auto, pil, device"),
        (["fixed_lambda=1.5"], r"fixed_lambda must be in \[-1, 1\]"),
        (["device=tpu"], "device must be 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        (["epochs"], "key=value"),
        (["method=byol"], "method must be one of"),
        (["mask_ratio=1.0"], r"mask_ratio must be in \(0, 1\)"),
        (["batch_size=0"], "batch_size must be >= 1"),
        (["warmup_epochs=20", "epochs=10"], "warmup_epochs"),
        (["global_batch=250", "batch_size=100"], "not a multiple"),
        (["betas=0.9"], "betas='0.9': expected tuple"),
    ],
)
def test_bad_config_is_explained(overrides, message):
    with pytest.raises(ValueError, match=message):
        resolve_config("clmae_fmnist_tiny", overrides)


def test_unknown_recipe_suggests_names():
    with pytest.raises(FileNotFoundError, match="clmae_fmnist_tiny"):
        load_recipe("clmae_fmnist_tiy")


def test_apply_overrides_in_place():
    cfg = TrainConfig()
    assert apply_overrides(cfg, ["seed=3"]) is cfg and cfg.seed == 3


@pytest.mark.slow
def test_mask_ratio_and_norm_pix_loss_have_one_home():
    short = resolve_config("clmae_fmnist_tiny", ["mask_ratio=0.6", "norm_pix_loss=true"])
    long = resolve_config("clmae_fmnist_tiny", ["model_kwargs.mask_ratio=0.6", "model_kwargs.norm_pix_loss=true"])
    assert short == long and short.model_kwargs == {"mask_ratio": 0.6, "norm_pix_loss": True}
    assert (short.mask_ratio, short.norm_pix_loss) == (0.6, True)
    model = short.pretraining_config()
    assert (model.mask_ratio, model.norm_pix_loss) == (0.6, True)
    assert "mask_ratio" not in short.to_dict() and "norm_pix_loss" not in short.to_dict()
    assert TrainConfig().mask_ratio == 0.75 and TrainConfig().norm_pix_loss is False  # the model's defaults


def _older_layout(**values) -> dict:
    """A checkpoint's config as runs wrote it before mask_ratio and norm_pix_loss moved into model_kwargs: both at
    the top level, model_kwargs after them."""
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "model_kwargs"}
    return {**old, "mask_ratio": 0.75, "norm_pix_loss": False, **values, "model_kwargs": {"depth": 2}}


def test_an_older_checkpoints_top_level_mask_ratio_is_kept_whatever_the_key_order():
    cfg = TrainConfig.from_dict(_older_layout(mask_ratio=0.6, norm_pix_loss=True))
    assert cfg.model_kwargs == {"depth": 2, "mask_ratio": 0.6, "norm_pix_loss": True}
    same = TrainConfig.from_dict({"model_kwargs": {"depth": 2, "mask_ratio": 0.6}, "mask_ratio": 0.6})
    assert same.model_kwargs == {"depth": 2, "mask_ratio": 0.6}
    with pytest.raises(ValueError, match=r"mask_ratio is given twice, 0.5 as mask_ratio and 0.6 as model_kwargs"):
        TrainConfig.from_dict({"mask_ratio": 0.5, "model_kwargs": {"mask_ratio": 0.6}})


def test_resuming_an_older_checkpoint_compares_its_real_mask_ratio():
    from clmae.train.resume import _check_resumable

    saved = _older_layout(mask_ratio=0.6, norm_pix_loss=True)
    same = TrainConfig(model_kwargs={"depth": 2, "mask_ratio": 0.6, "norm_pix_loss": True})
    _check_resumable(saved, same, 64, 64)  # the same run: accepted
    default = TrainConfig(model_kwargs={"depth": 2, "mask_ratio": 0.75})  # a default spelled out is no change
    _check_resumable(_older_layout(), default, 64, 64)
    with pytest.raises(
        ValueError,
        match=r"\(model_kwargs.mask_ratio: 0.6 -> 0.75, model_kwargs.norm_pix_loss: True "
        r"-> False\)",
    ):
        _check_resumable(saved, TrainConfig(model_kwargs={"depth": 2}), 64, 64)


def test_each_field_is_declared_once_with_its_rules():
    fields = dataclasses.fields(TrainConfig)
    assert all(f.metadata["doc"] for f in fields)
    for f in fields:  # the docstring is built from the declarations: every field once
        assert TrainConfig.__doc__.count(f"\n    {f.name}: ") == 1, f.name
    # what a resume may change: output, logging, pictures, workers, and how the global batch is split
    assert resumable_fields() == {
        "recipe", "data", "num_workers", "device", "compile", "out", "save_every", "save_every_steps",
        "keep_checkpoints", "log_every", "vis_every", "vis_images", "mask_probe", "decode", "export", "progress",
        "batch_size", "accum_iter", "global_batch", "term_grace", "allow_data_change", "cuda_graph",
    }  # fmt: skip
    # docs/cli.md names the same fields
    text = (Path(__file__).parents[1] / "docs" / "cli.md").read_text()
    listed = text.split("except in these fields:", 1)[1].split(".", 1)[0]
    assert set(re.findall(r"`(\w+)`", listed)) == resumable_fields()


@pytest.mark.parametrize("name", ["epochs", "warmup_epochs", "base_lr", "lr", "min_lr", "fixed_lambda", "term_grace"])
def test_values_set_in_code_are_checked_as_overrides_are(name):
    cfg = TrainConfig()
    setattr(cfg, name, float("inf"))  # bypasses the override parser's own check
    with pytest.raises(ValueError, match=f"{name} must be a finite number, got inf"):
        cfg.validate()
