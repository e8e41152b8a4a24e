"""save_pretrained / load_pretrained / load_pretraining_model on local folders, and timm loading those folders."""

import hashlib
import json
import os
import stat

import pytest
import timm
import torch
from conftest import tiny_pretrainer
from huggingface_hub import ModelCard
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import clmae
from clmae.hub import load_pretrained, load_pretraining_model, save_pretrained


@pytest.fixture
def pretrainer():
    model = tiny_pretrainer(seed=3)
    with torch.no_grad():  # move weights off their initial values so that a load that silently failed shows
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def folder(pretrainer, tmp_path):
    meta = {"datasets": ["fashion_mnist"], "metrics": {"knn_top1": 0.81}, "license": "mit", "tags": ["fashion"]}
    return save_pretrained(pretrainer, tmp_path / "w", metadata=meta)


def test_folder_layout_is_timm_format(folder, pretrainer):
    assert sorted(p.name for p in folder.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "pretraining.safetensors",
    ]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["architecture"] == "vit_tiny_patch16_224"
    assert cfg["num_classes"] == 0
    assert cfg["model_args"]["img_size"] == 28 and cfg["model_args"]["patch_size"] == 4
    assert cfg["model_args"]["in_chans"] == 1 and cfg["model_args"]["embed_dim"] == 32
    pc = cfg["pretrained_cfg"]
    assert pc["input_size"] == [1, 28, 28] and pc["license"] == "mit"
    assert pc["mean"] == [0.2860] and pc["std"] == [0.3530] and pc["crop_pct"] == 1.0
    assert cfg["clmae"]["arch"] == "vit_tiny_patch4_28"
    assert cfg["clmae"]["config"] == pretrainer.config.to_dict()
    # The encoder file has exactly the keys of the timm model that config.json describes, built independently.
    ref = timm.create_model(cfg["architecture"], num_classes=0, **cfg["model_args"]).state_dict()
    enc = load_file(folder / "model.safetensors")
    assert {k: v.shape for k, v in enc.items()} == {k: v.shape for k, v in ref.items()}
    assert "pos_embed" in enc
    full = load_file(folder / "pretraining.safetensors")
    assert set(full) == set(pretrainer.state_dict())
    assert any(k.startswith("masker.") for k in full) and "decoder.pos_embed" in full


def test_model_card_front_matter(folder):
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "mit"
    assert card.data.library_name == "timm"
    assert card.data.datasets == ["fashion_mnist"]
    assert card.data.metrics == ["knn_top1"]
    assert "clmae" in card.data.tags and "fashion" in card.data.tags
    assert "0.81" in card.text


def test_load_pretrained_roundtrip_bit_identical(folder, pretrainer, images):
    model = load_pretrained(folder)
    assert isinstance(model, timm.models.VisionTransformer) and not model.training
    for k, v in pretrainer.encoder.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    assert model.pretrained_cfg["input_size"] == (1, 28, 28)
    assert model.pretrained_cfg["mean"] == (0.2860,)
    assert model.pretrained_cfg["method"] == "clmae"
    with torch.no_grad():
        assert torch.equal(model(images), pretrainer.encoder(images))
    # local-dir: prefix, same thing
    assert torch.equal(load_pretrained(f"local-dir:{folder}").pos_embed, pretrainer.encoder.pos_embed)


def test_timm_loads_the_folder(folder, pretrainer, images):
    ref = pretrainer.encoder(images)
    by_dir = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
    cfg = json.loads((folder / "config.json").read_text())
    by_file = timm.create_model(
        cfg["architecture"],
        pretrained=True,
        pretrained_cfg_overlay=dict(file=str(folder / "model.safetensors"), **cfg["pretrained_cfg"]),
        num_classes=cfg["num_classes"],
        **cfg["model_args"],
    ).eval()
    with torch.no_grad():
        assert torch.equal(by_dir(images), ref)
        assert torch.equal(by_file(images), ref)


def test_load_pretraining_reproduces_losses(folder, pretrainer, images):
    full = load_pretraining_model(folder)
    assert full.config == pretrainer.config
    assert not full.encoder.pos_embed.requires_grad and not full.decoder.pos_embed.requires_grad
    for k, v in pretrainer.state_dict().items():
        assert torch.equal(full.state_dict()[k], v), k
    a, b = full.forward_masker(images, 0.5), pretrainer.forward_masker(images, 0.5)
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["scores"], b["scores"])
    assert torch.equal(full.forward_mae(images)["loss"], pretrainer.forward_mae(images)["loss"])


def test_encoder_only_folder(tmp_path, images):
    torch.manual_seed(0)
    enc = clmae.create_model("vit_tiny_patch4_28", embed_dim=32, depth=2, num_heads=2).eval()
    folder = save_pretrained(enc, tmp_path / "enc", metadata={"method": "mae"})
    assert not (folder / "pretraining.safetensors").exists()
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["clmae"]["arch"] == "vit_tiny_patch4_28" and cfg["clmae"]["method"] == "mae"
    with torch.no_grad():
        assert torch.equal(load_pretrained(folder)(images), enc(images))
    with pytest.raises(ValueError, match="encoder only"):
        load_pretraining_model(folder)


def test_fine_tune_kwargs(folder, pretrainer):
    model = load_pretrained(folder, num_classes=10, global_pool="avg")
    assert model.head.out_features == 10
    assert torch.equal(model.blocks[0].attn.qkv.weight, pretrainer.encoder.blocks[0].attn.qkv.weight)
    bigger = load_pretrained(folder, img_size=32)  # positions resampled, as timm does
    assert bigger.pos_embed.shape == (1, 1 + 64, 32) and bigger.pretrained_cfg["input_size"] == (1, 32, 32)
    assert torch.equal(bigger.pos_embed[:, :1], pretrainer.encoder.pos_embed[:, :1])


def test_save_rejects_other_models(tmp_path):
    with pytest.raises(ValueError, match="VisionTransformer"):
        save_pretrained(torch.nn.Linear(2, 2), tmp_path / "x")


def test_truncated_weights_error(folder):
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_pretrained(folder)
    (folder / "model.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_pretrained(folder)


def test_wrong_config_errors(folder):
    cfg_path = folder / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_pretrained(folder)
    cfg_path.write_text(json.dumps({"model_args": {}}))
    with pytest.raises(ValueError, match="lacks architecture, pretrained_cfg"):
        load_pretrained(folder)
    cfg_path.write_text(json.dumps({**cfg, "model_args": {**cfg["model_args"], "embed_dim": 64}}))
    # The weights file records the arguments it was saved with: the edit is named.
    with pytest.raises(ValueError, match=r"model_args\.embed_dim is 64 in config\.json, 32 in the weights"):
        load_pretrained(folder)
    weights = folder / "model.safetensors"  # without that record (older folders) the shapes still disagree
    save_file(load_file(weights), weights)
    with pytest.raises(ValueError, match=r"do not match the model: .*come from different models"):
        load_pretrained(folder)
    cfg_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_pretrained(folder)


@pytest.mark.slow
def test_a_clmae_built_from_its_modules_saves_and_loads(tmp_path, images):
    from clmae.models import MAEDecoder, MaskingModule

    torch.manual_seed(3)
    encoder = clmae.create_model("vit_tiny_patch4_28", embed_dim=32, depth=1, num_heads=2)
    decoder = MAEDecoder(49, 32, decoder_embed_dim=16, depth=1, num_heads=2, patch_size=4, in_chans=1)
    model = clmae.CLMAE(encoder, decoder, MaskingModule(49, 32, depth=1, num_heads=2)).eval()
    loaded = load_pretraining_model(save_pretrained(model, tmp_path / "w"))
    assert loaded.config.arch == "vit_tiny_patch4_28" and loaded.config.decoder_embed_dim == 16
    named = load_pretraining_model(save_pretrained(model, tmp_path / "named", name="vit_tiny_patch4_28"))
    assert named.config == loaded.config
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        assert torch.equal(loaded.forward_masker(images, 1.0)["loss"], model.forward_masker(images, 1.0)["loss"])


def test_wrong_image_size_error_from_the_explicit_check(folder):
    model = load_pretrained(folder)
    assert not model._forward_pre_hooks and not model._forward_hooks  # a plain timm model: no hidden hook
    clmae.check_input(model, torch.zeros(2, 1, 28, 28))  # fits: no error
    with pytest.raises(ValueError, match=r"must be 28x28 \(a float tensor \[N, 1, 28, 28\]\), got 32x32"):
        clmae.check_input(model, torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"must have 1 channel\(s\) .* got 3; preprocess with timm"):
        clmae.check_input(model, torch.zeros(2, 3, 28, 28))
    clmae.check_input(load_pretrained(folder, img_size=32), torch.zeros(2, 1, 32, 32))  # positions resampled


@pytest.mark.slow
def test_save_unwraps_compile_and_ddp_style_wrappers(pretrainer, tmp_path, images):
    class Wrapper(torch.nn.Module):  # what DistributedDataParallel looks like from outside: .module
        def __init__(self, module):
            super().__init__()
            self.module = module

    compiled = torch.compile(pretrainer)  # not run: only its wrapper (_orig_mod) matters here
    for i, wrapped in enumerate([Wrapper(pretrainer), compiled, Wrapper(compiled)]):
        folder = save_pretrained(wrapped, tmp_path / str(i))
        assert set(load_file(folder / "pretraining.safetensors")) == set(pretrainer.state_dict())
        with torch.no_grad():
            assert torch.equal(load_pretrained(folder)(images), pretrainer.encoder(images))


def test_save_rejects_non_json_metadata(pretrainer, tmp_path):
    with pytest.raises(ValueError, match="JSON values"):
        save_pretrained(pretrainer, tmp_path / "x", metadata={"metrics": {"acc": torch.tensor(0.5)}})
    assert not (tmp_path / "x").exists()  # nothing written


def test_weights_files_record_what_config_json_says(folder):
    cfg = json.loads((folder / "config.json").read_text())
    with safe_open(folder / "model.safetensors", "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    assert meta["format"] == "pt" and meta["clmae.architecture"] == cfg["architecture"] == "vit_tiny_patch16_224"
    assert json.loads(meta["clmae.model_args"]) == cfg["model_args"]
    # Each tensor's sha256 is that of its raw bytes, computed here independently through numpy.
    digests = json.loads(meta["clmae.tensor_sha256"])
    assert digests.keys() == tensors.keys()
    for key, value in tensors.items():
        assert digests[key] == hashlib.sha256(value.numpy().tobytes()).hexdigest(), key
    with safe_open(folder / "pretraining.safetensors", "pt") as f:
        meta = f.metadata()
    assert json.loads(meta["clmae.config"]) == cfg["clmae"]["config"]
    assert "clmae.model_args" not in meta and len(json.loads(meta["clmae.tensor_sha256"])) > len(digests)


def test_an_edited_config_is_named_and_files_without_the_record_still_load(folder, pretrainer):
    cfg = json.loads((folder / "config.json").read_text())
    edited = {**cfg, "model_args": {**cfg["model_args"], "num_heads": 4}}  # 32 / 4: builds, loads, other outputs
    (folder / "config.json").write_text(json.dumps(edited))
    with pytest.raises(ValueError, match=r"model_args\.num_heads is 4 in config\.json, 2 in the weights"):
        load_pretrained(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    edited = json.loads(json.dumps(cfg))
    edited["clmae"]["config"]["decoder_num_heads"] = 1
    (folder / "config.json").write_text(json.dumps(edited))
    load_pretrained(folder)  # the encoder file records only the encoder's arguments
    with pytest.raises(ValueError, match=r"clmae\.config\.decoder_num_heads is 1 in config\.json, 2 in the weights"):
        load_pretraining_model(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    for name in ("model.safetensors", "pretraining.safetensors"):  # as written by clmae < 0.3 or another tool
        save_file(load_file(folder / name), folder / name)
    ref = pretrainer.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in load_pretraining_model(folder).state_dict().items())
    assert all(torch.equal(v, ref[f"encoder.{k}"]) for k, v in load_pretrained(folder).state_dict().items())


def test_non_finite_weights_are_refused_when_saved_and_when_loaded(pretrainer, tmp_path):
    with torch.no_grad():
        pretrainer.decoder.pred.bias[0] = float("inf")
    with pytest.raises(ValueError, match=r"tensor decoder\.pred\.bias holds 1 non-finite value"):
        save_pretrained(pretrainer, tmp_path / "w")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_written_files_follow_the_umask(pretrainer, tmp_path, umask):
    old = os.umask(umask)
    try:
        folder = save_pretrained(pretrainer, tmp_path / "w")
        (folder / "model.safetensors").chmod(0o600)  # as safetensors writes it: a save over it fixes the mode
        save_pretrained(pretrainer, folder)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == dict.fromkeys(modes, 0o666 & ~umask) and len(modes) == 4
