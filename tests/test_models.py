import json

import pytest
import timm
import torch
from timm.models.vision_transformer import VisionTransformer

import clmae
from clmae.models import MAEDecoder, get_arch, sincos_2d

REQUIRED = [
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "vit_base_patch16_224",
    "vit_large_patch16_224",
    "vit_huge_patch14_224",
    "vit_tiny_patch4_28",
    "vit_tiny_patch4_32",
]


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_list_models():
    names = clmae.list_models()
    assert set(REQUIRED) <= set(names) and names == sorted(names)
    assert clmae.list_models("*patch4_28") == ["vit_small_patch4_28", "vit_tiny_patch4_28"]
    assert clmae.list_models("nothing*") == []


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_tiny_patch4_28", "vit_tiny_patch4_32", "vit_tiny_patch16_224"])
def test_encoder_is_plain_timm_and_loads_strictly(name):
    model = clmae.create_model(name)
    assert type(model) is VisionTransformer and model.num_classes == 0
    spec = get_arch(name)
    reference = timm.create_model(spec.timm_arch, num_classes=0, **spec.model_args)
    reference.load_state_dict(model.state_dict(), strict=True)
    x = torch.randn(2, *model.pretrained_cfg["input_size"])
    model.eval(), reference.eval()
    torch.testing.assert_close(reference.forward_features(x), model.forward_features(x))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vit_base_patch16_224", "vit_large_patch16_224", "vit_huge_patch14_224"])
def test_large_encoders_match_timm_keys_and_shapes(name):
    with torch.device("meta"):  # no memory, no init cost
        ours = clmae.create_pretraining_model(name).encoder
        reference = timm.create_model(name, num_classes=0)
    reference.load_state_dict(ours.state_dict(), strict=True, assign=True)


def test_vit_b_sizes_match_the_method():
    # docs/method.md §3: encoder 85.8 M, decoder 26.1 M, masking module 35.6 M parameters.
    with torch.device("meta"):
        model = clmae.create_pretraining_model("vit_base_patch16_224")
    assert round(_count(model.encoder) / 1e6, 1) == 85.8
    assert round(_count(model.decoder) / 1e6, 1) == 26.1
    assert round(_count(model.masker) / 1e6, 1) == 35.6
    assert (model.num_patches, model.len_keep) == (196, 49)
    assert len(model.masker.blocks) == 5 and model.masker.blocks[0].attn.num_heads == 4
    assert model.masker.blocks[0].norm1.eps == 1e-5 and model.encoder.blocks[0].norm1.eps == 1e-6


@pytest.mark.slow
def test_small_image_models_and_preprocessing():
    model = clmae.create_model("vit_tiny_patch4_28")
    assert model.patch_embed.num_patches == 49 and model.patch_embed.proj.in_channels == 1
    cfg = model.pretrained_cfg
    assert cfg["input_size"] == (1, 28, 28) and cfg["mean"] == (0.2860,) and cfg["std"] == (0.3530,)
    assert not cfg.get("hf_hub_id") and not cfg.get("url")  # no weight address of an unrelated timm tag
    bigger = clmae.create_model("vit_tiny_patch4_28", img_size=32)
    assert bigger.pretrained_cfg["input_size"] == (1, 32, 32)


def test_create_model_overrides_reach_timm():
    model = clmae.create_model("vit_tiny_patch4_28", num_classes=10, drop_path_rate=0.1, depth=3)
    assert model.num_classes == 10 and len(model.blocks) == 3
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_names_suggest_close_ones():
    with pytest.raises(ValueError, match="Did you mean: vit_base_patch16_224"):
        clmae.create_model("vit_bsae_patch16_224")
    with pytest.raises(ValueError, match="Unknown model 'resnet50'"):
        clmae.create_pretraining_model("resnet50")


@pytest.mark.slow
def test_pretraining_model_arguments():
    with pytest.raises(ValueError, match="method must be one of"):
        clmae.create_pretraining_model("vit_tiny_patch4_28", method="simmim")
    for bad in (0.0, 1.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=r"mask_ratio must be in \(0, 1\)"):
            clmae.create_pretraining_model("vit_tiny_patch4_28", mask_ratio=bad)
    with pytest.raises(ValueError, match="keeps 0 of 49"):
        clmae.create_pretraining_model("vit_tiny_patch4_28", mask_ratio=0.99)
    with pytest.raises(ValueError, match="masker_num_heads"):
        clmae.create_pretraining_model("vit_tiny_patch4_28", masker_num_heads=5)
    with pytest.raises(ValueError, match="no final norm"):
        clmae.create_pretraining_model("vit_tiny_patch4_28", global_pool="avg")
    mae = clmae.create_pretraining_model("vit_tiny_patch4_28", method="mae")
    assert mae.masker is None and mae.method == "mae"


def test_config_rebuilds_the_same_model():
    torch.manual_seed(0)
    model = clmae.create_pretraining_model("vit_tiny_patch4_28", embed_dim=48, depth=2, num_heads=3, masker_depth=2)
    rebuilt = clmae.create_pretraining_model(model.config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert rebuilt.config == model.config
    # Through JSON (config.json), and with the encoder arguments beside the fields.
    assert clmae.PretrainingConfig.from_dict(json.loads(json.dumps(model.config.to_dict()))) == model.config
    flat = {k: v for k, v in model.config.to_dict().items() if k != "encoder_kwargs"}
    assert clmae.PretrainingConfig.from_dict({**flat, "embed_dim": 48, "depth": 2, "num_heads": 3}) == model.config
    with pytest.raises(ValueError, match="needs 'arch'"):  # the layout of the first release is no longer read
        clmae.PretrainingConfig.from_dict(
            {"name": "vit_tiny_patch4_28", **{k: v for k, v in flat.items() if k != "arch"}}
        )


def test_decoder_and_masker_initialise_themselves_as_mae():
    torch.manual_seed(0)
    decoder = MAEDecoder(num_patches=16, embed_dim=8, decoder_embed_dim=8, depth=1, num_heads=2, patch_size=2)
    for m in decoder.modules():
        if isinstance(m, torch.nn.Linear):  # xavier-uniform: |w| <= sqrt(6 / (fan_in + fan_out)), zero bias
            bound = (6 / (m.in_features + m.out_features)) ** 0.5
            assert m.weight.abs().max() <= bound and m.weight.abs().max() > 0.5 * bound
            assert torch.count_nonzero(m.bias) == 0
        elif isinstance(m, torch.nn.LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    assert 0.005 < decoder.mask_token.std() < 0.05  # N(0, 0.02^2)
    assert torch.equal(decoder.pos_embed, sincos_2d(8, 4, cls_token=True)[None])


def test_model_arguments_are_checked_with_suggestions():
    with pytest.raises(ValueError, match=r"unknown model argument 'dpeth' \(did you mean depth"):
        clmae.create_pretraining_model("vit_tiny_patch4_28", dpeth=2)
    with pytest.raises(ValueError, match="method must be one of"):
        clmae.PretrainingConfig("vit_tiny_patch4_28", method="simclr")


@pytest.mark.slow
def test_mae_initialisation():
    model = clmae.create_pretraining_model("vit_tiny_patch16_224", method="clmae")
    qkv = model.encoder.blocks[0].attn.qkv.weight  # xavier-uniform bound sqrt(6 / (fan_in + fan_out))
    bound = (6 / (qkv.shape[0] + qkv.shape[1])) ** 0.5
    assert qkv.abs().max() <= bound and qkv.abs().max() > 0.9 * bound
    assert model.encoder.blocks[0].attn.qkv.bias.abs().max() == 0
    head = model.masker.mlp_head[1]
    assert head.bias.abs().max() == 0 and head.weight.abs().max() <= (6 / sum(head.weight.shape)) ** 0.5
    for token in (model.encoder.cls_token, model.decoder.mask_token, model.masker.cls_token):
        assert 0.01 < token.std().item() < 0.03  # N(0, 0.02^2)
