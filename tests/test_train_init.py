"""Continued pretraining (``init=``): the weights a run starts from are exactly the ones named, adapted as timm
adapts pretrained weights, recorded in the run's config and export, and resumable."""

import json

import pytest
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from timm.models import adapt_input_conv

import clmae
from clmae.train import trainer
from clmae.train.checkpoint import load_checkpoint
from clmae.train.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

WEIGHTS = "vit_t_fmnist"  # bundled: ViT-T/4, 28 px, 1 channel, with its decoder and masking module


def config(out, **overrides) -> TrainConfig:
    values = {
        "model": "vit_tiny_patch4_28",
        "data": "synthetic:16",
        "epochs": 2,
        "warmup_epochs": 1,
        "batch_size": 8,
        "out": str(out),
        "log_every": 1,
        "vis_every": 0,
        "vis_images": 2,
        "keep_checkpoints": 0,
        "device": "cpu",
        "progress": False,
        "export": False,
        "init": WEIGHTS,
    }
    return TrainConfig.from_dict({**values, **overrides})


@pytest.fixture
def first_weights(monkeypatch):
    """The pretraining model's weights as the first update sees them."""
    seen = {}
    real = trainer.train_step

    def spy(model, *args, **kwargs):
        if not seen:
            seen.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return real(model, *args, **kwargs)

    monkeypatch.setattr(trainer, "train_step", spy)
    return seen


def _equal(a, b, prefix=""):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), prefix + k


@pytest.mark.slow
def test_init_from_an_encoder_starts_from_its_weights_with_a_fresh_decoder(tmp_path, first_weights, capsys):
    trainer.train(config(tmp_path / "run", epochs=1))
    encoder = clmae.load_pretrained(WEIGHTS).state_dict()
    _equal({k[8:]: v for k, v in first_weights.items() if k.startswith("encoder.")}, encoder)
    published = clmae.load_pretraining_model(WEIGHTS).state_dict()
    decoder = [k for k in published if k.startswith("decoder.") and k.endswith("weight")]
    assert not any(torch.equal(first_weights[k], published[k]) for k in decoder)  # fresh, not the published one
    assert f"init: encoder (decoder and masking module fresh) from {WEIGHTS}" in capsys.readouterr().out


@pytest.mark.slow
def test_init_from_a_pretraining_model_loads_all_three_and_the_export_records_it(tmp_path, first_weights):
    run = tmp_path / "run"
    trainer.train(config(run, epochs=1, init=f"pretraining:{WEIGHTS}", export=True))
    _equal(first_weights, clmae.load_pretraining_model(WEIGHTS).state_dict())
    assert json.loads((run / "export" / "train_config.json").read_text())["init"] == f"pretraining:{WEIGHTS}"
    assert f"started from the weights `pretraining:{WEIGHTS}`" in (run / "export" / "README.md").read_text()
    assert f"init: pretraining:{WEIGHTS}" in (run / "config.yaml").read_text()


@pytest.mark.slow
def test_init_adapts_channels_and_positions_as_timm_does(tmp_path, first_weights, capsys):
    # The 1-channel 28 px encoder into a 3-channel 32 px model (vit_tiny_patch4_32: an 8x8 grid instead of 7x7).
    source = clmae.load_pretrained(WEIGHTS).state_dict()
    file = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in source.items()}, file)
    trainer.train(config(tmp_path / "run", model="vit_tiny_patch4_32", data="synthetic:16", epochs=1, init=str(file)))
    got = {k[8:]: v for k, v in first_weights.items() if k.startswith("encoder.")}
    grey = source["patch_embed.proj.weight"]  # a grey filter applied to each of R, G, B, a third of the weight each
    assert torch.allclose(got["patch_embed.proj.weight"], torch.cat([grey, grey, grey], 1) / 3)
    expected_pos = resample_abs_pos_embed(source["pos_embed"], [8, 8], num_prefix_tokens=1)
    assert torch.equal(got["pos_embed"], expected_pos)
    assert torch.equal(got["blocks.3.attn.qkv.weight"], source["blocks.3.attn.qkv.weight"])
    out = capsys.readouterr().out
    assert "input channels 1 -> 3" in out and "positions 50 -> 65" in out


@pytest.mark.slow
def test_rgb_weights_into_a_grey_model_follow_timm(tmp_path, first_weights):
    source = clmae.load_pretrained(WEIGHTS).state_dict()
    rgb = {**source, "patch_embed.proj.weight": torch.randn(192, 3, 4, 4, generator=torch.Generator().manual_seed(0))}
    file = tmp_path / "encoder.safetensors"
    save_file({k: v.contiguous() for k, v in rgb.items()}, file)
    trainer.train(config(tmp_path / "run", epochs=1, init=str(file)))
    got = first_weights["encoder.patch_embed.proj.weight"]
    assert torch.allclose(got, rgb["patch_embed.proj.weight"].sum(1, keepdim=True))
    assert torch.equal(got, adapt_input_conv(1, rgb["patch_embed.proj.weight"]))


@pytest.mark.slow
def test_init_from_a_whole_pretraining_file_and_mae_weights_into_clmae(tmp_path, first_weights, capsys):
    mae = clmae.load_pretraining_model("mae_vit_t_fmnist").state_dict()
    file = tmp_path / "pretraining.safetensors"
    save_file({k: v.contiguous() for k, v in mae.items()}, file)
    trainer.train(config(tmp_path / "run", epochs=1, init=str(file)))
    _equal({k: v for k, v in first_weights.items() if not k.startswith("masker.")}, mae)
    assert "masking module starts fresh" in capsys.readouterr().out


@pytest.mark.slow
def test_resume_after_init_equals_an_uninterrupted_run(tmp_path, capsys):
    trainer.train(config(tmp_path / "ref"))
    run = tmp_path / "run"
    trainer.train(config(run))
    (run / "checkpoint-0002.pt").unlink()
    capsys.readouterr()
    trainer.train(config(run), resume="auto")
    assert "init:" not in capsys.readouterr().out  # a resumed run takes its weights from the checkpoint only
    _equal(
        load_checkpoint(tmp_path / "ref" / "checkpoint-0002.pt")["model"],
        load_checkpoint(run / "checkpoint-0002.pt")["model"],
    )


@pytest.mark.parametrize(
    ("init", "match"),
    [
        ("no_such_weights", r"no_such_weights"),
        ("pretraining:no_such_weights", r"no_such_weights"),
    ],
)
def test_bad_init_is_a_clear_error(tmp_path, init, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        trainer.train(config(tmp_path / "run", init=init))


def test_init_of_another_width_names_the_mismatch(tmp_path):
    small = {"embed_dim": 32, "depth": 1, "num_heads": 2}
    with pytest.raises(ValueError, match=r"do not match the model.*init= needs weights of the run's architecture"):
        trainer.train(config(tmp_path / "run", model_kwargs=small))
    file = tmp_path / "half.safetensors"
    save_file({"encoder.cls_token": torch.zeros(1, 1, 192)}, file)
    with pytest.raises(ValueError, match=r"not a pretraining model's weights"):
        trainer.train(config(tmp_path / "run2", init=str(file)))


def test_timm_mae_encoders_fit_clmae_architectures_key_for_key():
    # init=vit_base_patch16_224.mae loads timm's MAE encoder (downloaded); offline, its architecture with random
    # weights must load into clmae's ViT-B pretraining model as it is, with nothing to adapt.
    import timm

    from clmae.train.init import load_encoder_into

    model = clmae.create_pretraining_model("vit_base_patch16_224", "mae")
    mae = timm.create_model("vit_base_patch16_224.mae", pretrained=False, num_classes=0).state_dict()
    assert load_encoder_into(model, mae, "timm vit_base_patch16_224.mae") == []
    _equal(model.encoder.state_dict(), mae)
