"""transformers ViTMAE in and out, proved against transformers' own ViTMAE: encoder features (CLS and patch tokens),
decoder reconstructions for the same mask and the MAE loss, both directions, 1 and 3 channels, with and without the
decoder. The models are small random ones built by transformers itself; no Hub access (a hand-made offline cache)."""

import dataclasses
import json

import pytest
import timm
import torch
from _hub_server import go_offline, make_cache
from conftest import TINY
from PIL import Image

import clmae
from clmae.cli import main
from clmae.data.fashion_mnist import SAMPLE_ROOT, load_fashion_mnist
from clmae.eval.model import resolve_model
from clmae.hub import export_vitmae, save_vitmae, vitmae, vitmae_map
from clmae.models import norm_eps
from clmae.train import trainer
from clmae.train.config import TrainConfig, resolve_config

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-5  # fp32 round-off of a two-block ViT (the measured differences are 0 or ~1e-7)


def hf_config(channels: int = 3, **overrides) -> "transformers.ViTMAEConfig":
    """A small ViTMAE: 16 px images of 4 px patches (16 patches), two encoder and two decoder blocks."""
    values = dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        image_size=16,
        patch_size=4,
        num_channels=channels,
        decoder_hidden_size=24,
        decoder_num_hidden_layers=2,
        decoder_num_attention_heads=3,
        decoder_intermediate_size=96,
    )
    return transformers.ViTMAEConfig(**{**values, **overrides})


def perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every tensor moved off its initial value (LayerNorm ones, zero biases, sin-cos positions, mask token): a
    swapped or dropped tensor shows in the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def hf_folder(tmp_path, channels=3, decoder=True, seed=0, **overrides):
    torch.manual_seed(seed)
    cls = transformers.ViTMAEForPreTraining if decoder else transformers.ViTMAEModel
    model = perturb(cls(hf_config(channels, **overrides)), seed)
    folder = tmp_path / f"vitmae{channels}{'d' if decoder else 'e'}"
    model.save_pretrained(folder)
    return folder, model


def hf_features(folder, x) -> torch.Tensor:
    """``ViTMAEModel`` tokens of every patch, in patch order: mask_ratio 0 and increasing noise (no shuffle)."""
    model = transformers.ViTMAEModel.from_pretrained(folder, mask_ratio=0.0).eval()
    noise = torch.arange(model.embeddings.patch_embeddings.num_patches, dtype=torch.float32)
    with torch.no_grad():
        out = model(x, noise=noise.expand(x.shape[0], -1))
    assert not out.mask.any()
    return out.last_hidden_state


def same_mask_outputs(clmae_model, hf_model, x, seed=3):
    """clmae's MAE step with its random masks from ``seed``, and ViTMAE's on the same mask: clmae keeps the K
    highest noise values, ViTMAE the K lowest, so ViTMAE gets ``1 - noise``."""
    noise = torch.rand(x.shape[0], clmae_model.num_patches, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ours = clmae_model.forward_mae(x, generator=torch.Generator().manual_seed(seed))
        theirs = hf_model(x, noise=1.0 - noise)
    assert torch.equal(ours["mask"], theirs.mask)
    return ours, theirs


def assert_close(a, b, what):
    diff = (a - b).abs().max().item()
    assert diff <= TOL, f"{what}: max abs difference {diff}"


@pytest.mark.slow
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("decoder", [True, False])
def test_vitmae_encoder_in_matches_transformers(tmp_path, channels, decoder):
    folder, _ = hf_folder(tmp_path, channels, decoder)
    x = torch.randn(3, channels, 16, 16, generator=torch.Generator().manual_seed(1))
    encoder = clmae.load_pretrained(folder)
    assert isinstance(encoder, timm.models.VisionTransformer) and norm_eps(encoder) == 1e-12
    with torch.no_grad():
        ours = encoder.forward_features(x)
    theirs = hf_features(folder, x)
    assert_close(ours[:, 0], theirs[:, 0], "CLS token")
    assert_close(ours[:, 1:], theirs[:, 1:], "patch tokens")
    # --model of clmae eval and clmae extract read it through the same mapping
    with torch.no_grad():
        assert_close(resolve_model(str(folder)).encoder().eval().forward_features(x), theirs, "eval --model")


@pytest.mark.slow
@pytest.mark.parametrize("channels,norm_pix_loss", [(1, False), (3, True)])
def test_vitmae_pretraining_in_matches_transformers(tmp_path, channels, norm_pix_loss):
    folder, hf_model = hf_folder(tmp_path, channels, norm_pix_loss=norm_pix_loss, layer_norm_eps=1e-9)
    model = clmae.load_pretraining_model(folder)
    assert model.method == "mae" and model.norm_pix_loss == norm_pix_loss and model.config.norm_eps == 1e-9
    x = torch.randn(4, channels, 16, 16, generator=torch.Generator().manual_seed(2))
    ours, theirs = same_mask_outputs(model, hf_model, x)
    assert_close(ours["pred"], theirs.logits, "reconstruction")
    assert_close(ours["loss"], theirs.loss, "MAE loss")


def clmae_model(channels: int, seed: int = 0) -> clmae.CLMAE:
    """A small random CL-MAE on 1-channel 28 px or 3-channel 32 px images, every tensor perturbed."""
    arch = "vit_tiny_patch4_28" if channels == 1 else "vit_tiny_patch4_32"
    torch.manual_seed(seed)
    return perturb(clmae.create_pretraining_model(arch, "clmae", **{**TINY, "masker_depth": 1}), seed)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("decoder", [True, False])
def test_clmae_out_matches_transformers(tmp_path, channels, decoder):
    model = clmae_model(channels)
    size = model.img_size[0]
    folder = save_vitmae(model, tmp_path / "hf", decoder=decoder)
    config = json.loads((folder / "config.json").read_text())
    assert config["mask_ratio"] == 0.0 and config["layer_norm_eps"] == 1e-6
    x = torch.randn(3, channels, size, size, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        ours = model.encoder.forward_features(x)
        unmasked = transformers.ViTMAEModel.from_pretrained(folder).eval()(x)  # the folder's config: no mask
    assert not unmasked.mask.any()
    assert_close(unmasked.last_hidden_state[:, 0], ours[:, 0], "CLS token (default config)")
    theirs = hf_features(folder, x)
    assert_close(theirs[:, 0], ours[:, 0], "CLS token")
    assert_close(theirs[:, 1:], ours[:, 1:], "patch tokens")
    if decoder:
        hf_model = transformers.ViTMAEForPreTraining.from_pretrained(folder, mask_ratio=0.75).eval()
        mae = clmae.create_pretraining_model(model.config.arch, "mae", **TINY)  # same encoder and decoder, MAE masks
        mae.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("masker.")})
        ours, theirs = same_mask_outputs(mae.eval(), hf_model, x)
        assert_close(theirs.logits, ours["pred"], "reconstruction")
        assert_close(theirs.loss, ours["loss"], "MAE loss")
    else:
        assert config["architectures"] == ["ViTMAEModel"]
        assert not any(k.startswith("decoder") for k in transformers.ViTMAEModel.from_pretrained(folder).state_dict())


@pytest.mark.slow
def test_round_trip_is_bit_identical(tmp_path):
    folder, hf_model = hf_folder(tmp_path, 3, norm_pix_loss=True)
    back = save_vitmae(clmae.load_pretraining_model(folder), tmp_path / "back")
    again = transformers.ViTMAEForPreTraining.from_pretrained(back, mask_ratio=0.75)
    a, b = hf_model.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert again.config.norm_pix_loss and again.config.layer_norm_eps == 1e-12


@pytest.mark.slow
def test_bundled_weight_exported_reads_back_in_transformers(tmp_path):
    folder = export_vitmae("vit_t_fmnist", tmp_path / "hf", decoder=True)
    images, _ = load_fashion_mnist("test", SAMPLE_ROOT)  # the bundled sample
    pil = [Image.fromarray(images[i].numpy(), mode="L") for i in range(4)]
    encoder = clmae.load_pretrained("vit_t_fmnist")
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=encoder))
    x = torch.stack([transform(img) for img in pil])
    v5 = int(transformers.__version__.split(".")[0]) >= 5  # 5.x names the two implementations backend=...
    for backend, fast in (("pil", False), ("torchvision", True)):
        option = {"backend": backend} if v5 else {"use_fast": fast}
        processor = transformers.AutoImageProcessor.from_pretrained(folder, **option)
        pixels = processor(images=pil, return_tensors="pt")["pixel_values"]
        assert pixels.shape == x.shape == (4, 1, 28, 28)
        assert_close(pixels, x, f"image processor ({backend})")
    with torch.no_grad():
        ours = encoder.forward_features(x)
    assert_close(hf_features(folder, x), ours, "encoder tokens")
    mae = clmae.load_pretraining_model("vit_t_fmnist")
    mae = clmae.CLMAE(mae.encoder, mae.decoder, None, dataclasses.replace(mae.config, method="mae"))  # MAE masks
    hf_model = transformers.ViTMAEForPreTraining.from_pretrained(folder, mask_ratio=0.75).eval()
    ours, theirs = same_mask_outputs(mae.eval(), hf_model, x)
    assert_close(theirs.logits, ours["pred"], "reconstruction")
    assert_close(theirs.loss, ours["loss"], "MAE loss")


@pytest.mark.slow
def test_interpolate_pos_encoding_matches_timm_resampling(tmp_path):
    folder, _ = hf_folder(tmp_path, 3, decoder=False)
    x = torch.randn(2, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    model = transformers.ViTMAEModel.from_pretrained(folder, mask_ratio=0.0).eval()
    with torch.no_grad():
        theirs = model(x, noise=torch.arange(36.0).expand(2, -1), interpolate_pos_encoding=True).last_hidden_state
        ours = clmae.load_pretrained(folder, img_size=24).forward_features(x)
    assert_close(ours, theirs, "tokens at 24 px")


@pytest.mark.slow
def test_convert_keeps_the_layer_norm_epsilon(tmp_path):
    folder, hf_model = hf_folder(tmp_path, 1)
    assert main(["convert", str(folder), str(tmp_path / "out")]) == 0
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert_close(clmae.load_pretrained(tmp_path / "out").forward_features(x), hf_features(folder, x), "encoder")
    ours, theirs = same_mask_outputs(clmae.load_pretraining_model(tmp_path / "out"), hf_model, x)
    assert_close(ours["loss"], theirs.loss, "MAE loss after convert")


@pytest.mark.slow
def test_hub_repo_from_an_offline_cache(tmp_path, monkeypatch):
    folder, _ = hf_folder(tmp_path, 3, decoder=False)
    make_cache(tmp_path / "cache", "org/vitmae", "a" * 40, folder)
    go_offline(monkeypatch)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    encoder = clmae.load_pretrained("hf-hub:org/vitmae", cache_dir=tmp_path / "cache")
    with torch.no_grad():
        assert_close(encoder.forward_features(x), hf_features(folder, x), "hf-hub: encoder")
    assert encoder.pretrained_cfg["hf_hub_id"] == "org/vitmae"


def test_refusals_name_what_cannot_be_mapped(tmp_path):
    folder, _ = hf_folder(tmp_path, 3, decoder=False)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(FileNotFoundError, match=r"only pytorch_model\.bin.*only safetensors"):
        clmae.load_pretrained(pickled)
    with pytest.raises(ValueError, match=r"ViTMAEModel \(encoder only\)"):
        clmae.load_pretraining_model(folder)
    config = json.loads((folder / "config.json").read_text())
    for key, value, match in [
        ("hidden_act", "relu", "hidden_act='relu'"),
        ("head_dim", 16, "head_dim=16"),
        ("patch_size", [4, 2], "patch_size=\\[4, 2\\] is not square"),
    ]:
        (folder / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ValueError, match=match):
            clmae.load_pretrained(folder)
    with pytest.raises(ValueError, match="decoder_intermediate_size=50"):
        vitmae_map.decoder_fields({**vitmae.DEFAULTS, "decoder_intermediate_size": 50})
    with pytest.raises(ValueError, match=r"'extra\.weight'"):
        vitmae_map.to_clmae_state({"extra.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="fc_norm"):
        save_vitmae(clmae.create_model("vit_tiny_patch4_28", global_pool="avg", **TINY_ENCODER), tmp_path / "x")


TINY_ENCODER = {k: TINY[k] for k in ("embed_dim", "depth", "num_heads")}


def run_config(out, init, **overrides) -> TrainConfig:
    values = {
        "model": "vit_tiny_patch4_28",
        "method": "mae",
        "model_kwargs": {**TINY, "depth": 2},
        "data": "synthetic:8",
        "epochs": 1,
        "warmup_epochs": 0,
        "batch_size": 4,
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


def test_train_init_starts_from_the_folder_encoder_and_decoder(tmp_path, monkeypatch):
    """The first reconstruction loss of `clmae train init=<ViTMAE folder>` is ViTMAE's own on the same batch and
    mask."""
    shape = dict(hidden_size=32, num_attention_heads=2, intermediate_size=128, image_size=28, num_channels=1)
    decoder = dict(decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=2)
    folder, hf_model = hf_folder(tmp_path, 1, **shape, **decoder, decoder_intermediate_size=128)
    with pytest.raises(ValueError, match=r"has norm_eps=1e-12, the run asks for model_kwargs\.norm_eps=1e-06"):
        trainer.train(run_config(tmp_path / "refused", folder, model_kwargs={**TINY, "depth": 2, "norm_eps": 1e-6}))
    first = []
    forward_mae = clmae.CLMAE.forward_mae

    def record(self, imgs, generator=None):
        out = forward_mae(self, imgs, generator)
        if not first:
            first.append((imgs.detach().clone(), out["mask"].detach().clone(), out["loss"].item()))
        return out

    monkeypatch.setattr(clmae.CLMAE, "forward_mae", record)
    cfg = run_config(tmp_path / "run", folder, model_kwargs={**TINY, "depth": 2, "norm_eps": 1e-12})
    trainer.train(cfg)
    imgs, mask, loss = first[0]
    noise = mask + torch.linspace(0, 0.5, mask.shape[1])  # the kept patches (0) lowest: ViTMAE keeps them
    with torch.no_grad():
        theirs = hf_model(imgs, noise=noise)
    assert torch.equal(theirs.mask, mask)
    assert abs(theirs.loss.item() - loss) <= TOL * max(1.0, loss), (theirs.loss.item(), loss)


@pytest.mark.slow
def test_recipe_vit_b16_maps_onto_vit_mae_base():
    """`clmae train --recipe clmae_vit_b16_in1k init=<facebook/vit-mae-base>`: the recipe's model has exactly the
    keys and shapes of ViTMAEConfig()'s (vit-mae-base's) encoder and decoder, checked on the meta device."""
    cfg = resolve_config("clmae_vit_b16_in1k", ["model_kwargs.norm_eps=1e-12"])
    hf = {**vitmae.DEFAULTS, **transformers.ViTMAEConfig().to_dict()}
    mapped = vitmae.pretraining_config(hf)
    ours = cfg.pretraining_config()
    assert (mapped.arch, mapped.encoder_kwargs, mapped.norm_eps) == (ours.arch, {}, ours.norm_eps)
    assert [getattr(mapped, f"decoder_{k}") for k in ("embed_dim", "depth", "num_heads")] == [512, 8, 16]
    with torch.device("meta"):
        hf_model = transformers.ViTMAEForPreTraining(transformers.ViTMAEConfig())
        model = clmae.create_pretraining_model(ours)
    saved = vitmae_map.to_vitmae_state(model.encoder.state_dict(), model.decoder.state_dict())  # names as saved
    encoder, decoder = vitmae_map.to_clmae_state(saved)
    theirs = {
        k: tuple(v.shape)
        for k, v in vitmae_map.to_vitmae_state(*vitmae_map.to_clmae_state(hf_model.state_dict())).items()
    }
    assert {k: tuple(v.shape) for k, v in saved.items()} == theirs
    assert encoder.keys() == model.encoder.state_dict().keys() and decoder.keys() == model.decoder.state_dict().keys()


def test_export_command_writes_an_encoder_folder(tmp_path):
    assert main(["export", "vit_t_fmnist", str(tmp_path / "hf"), "--format", "transformers"]) == 0
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == ["ViTMAEModel"] and config["num_channels"] == 1
    assert main(["export", "vit_t_fmnist", str(tmp_path / "x"), "--decoder"]) == 2  # --decoder needs the format
