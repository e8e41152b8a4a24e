"""One reading of weight specs (clmae.hub.resolve) for load_pretrained, eval --model and init=, and the input
adaptation of the shared loader, checked against timm's own adaptation."""

import inspect
import json
import shutil

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed, resample_patch_embed
from timm.models import adapt_input_conv

import clmae
from clmae.eval.model import resolve_model
from clmae.hub import parse_spec, registry
from clmae.hub.convert import encoder_state, rename_reference_keys
from clmae.train.init import initialize

pytestmark = pytest.mark.usefixtures("one_thread")

WEIGHTS = "vit_t_fmnist"  # bundled: ViT-T/4, 28 px, 1 channel
BASE_CHANS = "base_chans" in inspect.signature(adapt_input_conv).parameters
needs_base_chans = pytest.mark.skipif(not BASE_CHANS, reason="this timm adapts RGB weights only")


@pytest.fixture(scope="module")
def grey():
    """The bundled encoder's tensors as loaded without adaptation."""
    return clmae.load_pretrained(WEIGHTS).state_dict()


def _unchanged_but(got: dict, ref: dict, *changed: str) -> None:
    assert got.keys() == ref.keys()
    for k in ref:
        if k not in changed:
            assert torch.equal(got[k], ref[k]), k


@pytest.mark.slow
@needs_base_chans
def test_in_chans_adapts_the_patch_embedding_as_timm_does(grey):
    model = clmae.load_pretrained(WEIGHTS, in_chans=3)
    got = model.state_dict()
    expected = adapt_input_conv(3, grey["patch_embed.proj.weight"], base_chans=1)
    assert expected.shape == (192, 3, 4, 4)
    assert torch.equal(got["patch_embed.proj.weight"], expected)
    # by hand: the grey filter on each of R, G, B, a third of the weight each
    third = grey["patch_embed.proj.weight"] / 3
    assert torch.allclose(got["patch_embed.proj.weight"], torch.cat([third] * 3, 1))
    _unchanged_but(got, grey, "patch_embed.proj.weight")
    assert not model.training and model.pretrained_cfg["input_size"] == (3, 28, 28)
    assert model.pretrained_cfg["mean"] == (0.286,) * 3 and model.pretrained_cfg["std"] == (0.353,) * 3
    assert model(torch.zeros(2, 3, 28, 28)).shape == (2, 192)


@needs_base_chans
def test_in_chans_equals_timm_create_model_pretrained(grey, tmp_path):
    # timm's own loader (_builder.load_pretrained) on the same 1-channel weights, asked for 3 channels.
    file = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in grey.items()}, file)
    cfg = json.loads((registry.bundled_folder(registry.find(WEIGHTS)) / "config.json").read_text())
    overlay = {"file": str(file), "input_size": (1, 28, 28), "first_conv": "patch_embed.proj", "num_classes": 0}
    args = {**cfg["model_args"], "in_chans": 3}
    theirs = timm.create_model(cfg["architecture"], pretrained=True, pretrained_cfg_overlay=overlay, **args)
    _unchanged_but(clmae.load_pretrained(WEIGHTS, in_chans=3).state_dict(), theirs.state_dict())
    assert clmae.create_model(WEIGHTS, pretrained=True, in_chans=3).training  # timm's contract: train mode


def test_patch_size_and_image_size_are_resampled_as_timm_does(grey):
    got = clmae.load_pretrained(WEIGHTS, patch_size=2, img_size=32).state_dict()
    assert torch.equal(got["patch_embed.proj.weight"], resample_patch_embed(grey["patch_embed.proj.weight"], [2, 2]))
    assert torch.equal(got["pos_embed"], resample_abs_pos_embed(grey["pos_embed"], [16, 16], num_prefix_tokens=1))
    _unchanged_but(got, grey, "patch_embed.proj.weight", "pos_embed")


def test_eval_and_init_adapt_through_the_same_loader(grey):
    ours = clmae.load_pretrained(WEIGHTS, in_chans=3).state_dict()
    evaluated = resolve_model(WEIGHTS, overrides={"in_chans": 3}).encoder().state_dict()
    _unchanged_but(evaluated, ours)
    model = clmae.create_pretraining_model("vit_tiny_patch4_28", "mae", in_chans=3)
    logged = []
    initialize(model, WEIGHTS, log=logged.append)
    _unchanged_but(model.encoder.state_dict(), ours)
    assert logged == [
        f"init: encoder (decoder and masking module fresh) from {WEIGHTS}; adapted: input channels 1 -> 3 "
        "(timm adapt_input_conv)"
    ]


def _error(call) -> tuple[type, str]:
    with pytest.raises(Exception) as err:  # any error: the point is that every entry point raises the same
        call()
    return type(err.value), str(err.value)


def _entry_points(spec: str):
    model = clmae.create_pretraining_model("vit_tiny_patch4_28", "mae")
    return (
        lambda: clmae.load_pretrained(spec),
        lambda: resolve_model(spec),
        lambda: initialize(model, spec, log=lambda _: None),
    )


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp: str(tmp / "no" / "such"), "is not a folder"),
        (lambda tmp: f"local-dir:{tmp / 'nope'}", "is not a folder"),
        (lambda tmp: "hf-hub:org/a/b", "expected hf-hub:org/repo"),
        (lambda tmp: "vit_b", "not yet published"),
        (lambda tmp: (tmp / "w").mkdir() or str(tmp / "w"), "is not a weights folder: it has no config.json"),
    ],
)
def test_the_same_spec_gets_the_same_error_everywhere(tmp_path, make, words):
    errors = {_error(call) for call in _entry_points(make(tmp_path))}
    assert len(errors) == 1, errors
    assert words in errors.pop()[1]


@pytest.mark.slow
def test_a_folder_with_only_the_whole_model_loads_its_encoder_from_that_file(tmp_path):
    bundled = registry.bundled_folder(registry.find(WEIGHTS))
    folder = shutil.copytree(bundled, tmp_path / "w")  # config.json + pretraining.safetensors, no model.safetensors
    assert not (folder / "model.safetensors").exists()
    _unchanged_but(clmae.load_pretrained(str(folder)).state_dict(), clmae.load_pretrained(WEIGHTS).state_dict())
    _unchanged_but(resolve_model(str(folder)).encoder().state_dict(), clmae.load_pretrained(WEIGHTS).state_dict())
    whole = str(folder / "pretraining.safetensors")
    assert parse_spec(whole).whole and parse_spec(whole).source.filename == "pretraining.safetensors"
    _unchanged_but(clmae.load_pretrained(whole).state_dict(), clmae.load_pretrained(WEIGHTS).state_dict())
    _unchanged_but(resolve_model(whole).encoder().state_dict(), clmae.load_pretrained(WEIGHTS).state_dict())


def test_what_only_some_entry_points_take(tmp_path, grey):
    file = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in grey.items()}, file)
    with pytest.raises(ValueError, match="bare weights file"):
        clmae.load_pretrained(str(file))
    assert parse_spec(str(file), bare=True).file == file
    with pytest.raises(ValueError, match=r"'pretraining:' prefix .* clmae\.load_pretraining_model\('vit_t_fmnist'\)"):
        clmae.load_pretrained(f"pretraining:{WEIGHTS}")
    spec = parse_spec(f"pretraining:{WEIGHTS}", prefix=True)
    assert spec.whole and spec.name == WEIGHTS and spec.source.entry.name == "vit_tiny_patch4_28.clmae_fmnist"
    with pytest.raises(ValueError, match=r"Unknown model 'vit_tiny_patch4_29'.*Nor is it a weight"):
        resolve_model("vit_tiny_patch4_29")  # eval takes architecture names: its error names both kinds


def test_the_reference_layout_is_known_once():
    # encoder_state (eval) keeps exactly the keys that rename_reference_keys (convert) puts under encoder.
    enc = clmae.create_model("vit_tiny_patch4_28", embed_dim=32, depth=1, num_heads=2).state_dict()
    reference = {
        **enc,
        "mask_token": torch.zeros(1, 1, 8),
        "decoder_embed.weight": torch.zeros(8, 32),
        "decoder_blocks.0.norm1.weight": torch.zeros(8),
        "decoder_pred.bias": torch.zeros(16),
        "masking_net.cls_token": torch.zeros(1, 1, 32),
        "masking_net.pos_embed": torch.zeros(1, 1, 32),
    }
    renamed = rename_reference_keys(reference)
    from_convert = {k[len("encoder.") :] for k in renamed if k.startswith("encoder.")}
    assert set(encoder_state(reference)) == from_convert == set(enc)
    assert set(encoder_state(renamed)) == set(enc)  # clmae's own layout
