"""``init=`` and ``clmae eval --model`` take the architecture from the weights' config.json (a transformers ViTMAE one,
a timm one): no model argument typed; and the run says its preprocessing, and when the weights' differs."""

import pytest
import timm
import torch
import yaml

import clmae
from clmae.eval.model import resolve_model
from clmae.hub import save_vitmae
from clmae.models import norm_eps
from clmae.train import trainer
from clmae.train.checkpoint import list_checkpoints, load_checkpoint
from clmae.train.config import TrainConfig
from clmae.train.init import preprocessing_note
from clmae.train.metrics import read_metrics

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_thread")

# The source models, written out by hand: 28 px, 1 channel, 4 px patches, 2 blocks of width 32.
SHAPE = dict(img_size=28, patch_size=4, in_chans=1, embed_dim=32, depth=2, num_heads=2)


def run_config(out, init, **overrides) -> TrainConfig:
    """A run that types no model argument: only the recipe-level model name, which the weights' config replaces."""
    values = {
        "model": "vit_base_patch16_224",  # deliberately not the weights' architecture
        "method": "mae",
        "data": "synthetic:8",
        "epochs": 1,
        "warmup_epochs": 0,
        "batch_size": 4,
        "lr": 1e-12,  # the weights barely move: the checkpoint shows where they started
        "weight_decay": 0.0,
        "out": str(out),
        "log_every": 1,
        "vis_every": 0,
        "keep_checkpoints": 0,
        "device": "cpu",
        "progress": False,
        "export": False,
        "init": str(init),
    }
    return TrainConfig.from_dict({**values, **overrides})


def vitmae_folder(tmp_path):
    """A transformers ViTMAEForPreTraining saved by transformers itself (LayerNorm epsilon 1e-12, no processor file:
    ViTImageProcessor's mean/std 0.5)."""
    config = transformers.ViTMAEConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        image_size=28,
        patch_size=4,
        num_channels=1,
        decoder_hidden_size=24,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=3,
        decoder_intermediate_size=96,
    )
    torch.manual_seed(0)
    model = transformers.ViTMAEForPreTraining(config).eval()
    folder = tmp_path / "vitmae"
    model.save_pretrained(folder)
    return folder, model


def timm_folder(tmp_path):
    """A timm encoder saved by timm itself (``save_for_hf``: timm's config.json with mean/std 0.5)."""
    torch.manual_seed(1)
    model = timm.create_model("vit_tiny_patch16_224", num_classes=0, **SHAPE).eval()
    folder = tmp_path / "timm"
    timm.models.save_for_hf(model, folder, model_args=SHAPE, safe_serialization=True)
    return folder, model


def final_state(out) -> dict[str, torch.Tensor]:
    return load_checkpoint(list_checkpoints(out)[-1])["model"]


def recorded_model(out) -> clmae.CLMAE:
    """The model that the run's config.yaml describes, built on the meta device."""
    saved = TrainConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    with torch.device("meta"):
        return clmae.create_pretraining_model(saved.pretraining_config())


def structure(model: clmae.CLMAE) -> dict:
    enc = model.encoder
    return {
        "img_size": tuple(enc.patch_embed.img_size),
        "patch_size": enc.patch_embed.patch_size[0],
        "in_chans": enc.patch_embed.proj.in_channels,
        "embed_dim": enc.embed_dim,
        "depth": len(enc.blocks),
        "num_heads": enc.blocks[0].attn.num_heads,
    }


def test_init_from_a_vitmae_folder_needs_no_model_argument(tmp_path, capsys):
    folder, hf_model = vitmae_folder(tmp_path)
    trainer.train(run_config(tmp_path / "run", folder))
    log = capsys.readouterr().out
    assert "init: architecture of" in log and "init: encoder, decoder and masking module from" in log
    model = recorded_model(tmp_path / "run")
    assert structure(model) == {**SHAPE, "img_size": (28, 28)}
    assert norm_eps(model.encoder) == norm_eps(model.decoder) == 1e-12  # ViTMAEConfig's layer_norm_eps
    dec = model.decoder
    assert (dec.embed.out_features, len(dec.blocks), dec.blocks[0].attn.num_heads) == (24, 1, 3)
    # it started from the folder's weights (lr 1e-12: they did not move)
    state = final_state(tmp_path / "run")
    hf = hf_model.state_dict()
    assert torch.allclose(state["encoder.cls_token"], hf["vit.embeddings.cls_token"], atol=1e-9)
    assert torch.allclose(state["decoder.embed.weight"], hf["decoder.decoder_embed.weight"], atol=1e-9)
    # the run's preprocessing: printed, recorded, and said to differ from the folder's processor (0.5)
    assert "preprocessing: images normalised with mean (0.0,), std (1.0,)" in log
    notes = [line for line in log.splitlines() if "was pretrained on images normalised" in line]
    assert len(notes) == 1 and "mean (0.5), std (0.5)" in notes[0] and "mean (0), std (1)" in notes[0]
    first = read_metrics(tmp_path / "run" / "metrics.jsonl")[0]
    assert (first["mean"], first["std"]) == ([0.0], [1.0])


def test_init_from_a_timm_folder_needs_no_model_argument(tmp_path, capsys):
    folder, source = timm_folder(tmp_path)
    trainer.train(run_config(tmp_path / "run", folder, method="clmae", model_kwargs={"masker_depth": 1}))
    log = capsys.readouterr().out
    model = recorded_model(tmp_path / "run")
    assert structure(model) == {**SHAPE, "img_size": (28, 28)} and len(model.masker.blocks) == 1
    state = final_state(tmp_path / "run")
    for key, value in source.state_dict().items():
        assert torch.allclose(state[f"encoder.{key}"], value, atol=1e-9), key
    assert "init: encoder (decoder and masking module fresh)" in log
    assert sum("was pretrained on images normalised with mean (0.5)" in line for line in log.splitlines()) == 1


@pytest.mark.parametrize("in_chans", [None, 3])
def test_init_from_an_encoder_only_vitmae_folder(tmp_path, capsys, in_chans):
    """A ViTMAEModel folder (``clmae export --format transformers``, also with ``--in-chans 3``): its encoder is
    loaded under the encoder's own keys, the decoder and masking module start fresh."""
    torch.manual_seed(4)
    encoder = clmae.create_model("vit_tiny_patch4_28", embed_dim=32, depth=2, num_heads=2).eval()
    folder = save_vitmae(encoder, tmp_path / "exported", decoder=False, in_chans=in_chans)
    trainer.train(run_config(tmp_path / "run", folder, method="clmae", model_kwargs={"masker_depth": 1}))
    assert "init: encoder (decoder and masking module fresh)" in capsys.readouterr().out
    state, expected = final_state(tmp_path / "run"), encoder.state_dict()
    assert state["encoder.pos_embed"].shape == expected["pos_embed"].shape
    for key in ("cls_token", "blocks.1.mlp.fc2.weight", "norm.weight"):
        assert torch.allclose(state[f"encoder.{key}"], expected[key], atol=1e-9), key
    patch = state["encoder.patch_embed.proj.weight"]
    if in_chans == 3:  # the RGB stem (the grey one split in three) back on the run's 3 channels: one third each
        assert patch.shape[1] == 3
        assert torch.allclose(patch.sum(1, keepdim=True), expected["patch_embed.proj.weight"], atol=1e-6)
    else:
        assert torch.allclose(patch, expected["patch_embed.proj.weight"], atol=1e-9)


def test_input_arguments_are_kept_and_others_must_agree(tmp_path, capsys):
    folder, _ = timm_folder(tmp_path)
    trainer.train(run_config(tmp_path / "run", folder, model_kwargs={"img_size": 32}))
    log = capsys.readouterr().out
    assert structure(recorded_model(tmp_path / "run")) == {**SHAPE, "img_size": (32, 32)}
    assert "positions 50 -> 65" in log  # 7x7 + 1 -> 8x8 + 1, adapted as timm adapts them
    with pytest.raises(ValueError, match=r"do not match: it has depth=2, the run asks for model_kwargs\.depth=3; drop"):
        trainer.train(run_config(tmp_path / "refused", folder, model_kwargs={"depth": 3}))


def test_no_note_when_the_preprocessing_agrees(tmp_path):
    torch.manual_seed(2)
    encoder = clmae.create_model("vit_tiny_patch4_28", embed_dim=32, depth=2, num_heads=2)  # Fashion-MNIST's cfg
    folder = save_vitmae(encoder, tmp_path / "exported")
    assert preprocessing_note(str(folder), (0.286,), (0.353,)) is None
    note = preprocessing_note(str(folder), (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert note is not None and "mean (0.286), std (0.353)" in note and "0.485" in note


@pytest.mark.parametrize("kind", ["vitmae", "timm"])
def test_eval_model_reads_the_architecture(tmp_path, kind):
    folder, source = vitmae_folder(tmp_path) if kind == "vitmae" else timm_folder(tmp_path)
    encoder = resolve_model(str(folder)).encoder().eval()  # no arch=, no model_kwargs
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ours = encoder.forward_features(x)
        if kind == "timm":
            theirs = source.forward_features(x)
        else:  # ViTMAE's tokens in patch order: mask ratio 0 and increasing noise
            hf = transformers.ViTMAEModel.from_pretrained(folder, mask_ratio=0.0).eval()
            theirs = hf(x, noise=torch.arange(49, dtype=torch.float32).expand(2, -1)).last_hidden_state
    if kind == "vitmae":
        assert norm_eps(encoder) == 1e-12
    assert (ours - theirs).abs().max().item() <= 1e-5  # fp32 round-off of two blocks
