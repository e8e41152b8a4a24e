"""clmae convert: reference CL-MAE / MAE checkpoints (docs/method.md §8 key layout) -> weights folders."""

import argparse

import pytest
import torch
from conftest import tiny_pretrainer

from clmae.hub import load_pretrained, load_pretraining_model
from clmae.hub.convert import convert_checkpoint, load_reference_checkpoint


def _to_reference(model) -> dict[str, torch.Tensor]:
    """Our state dict written with the reference code's key names (docs/method.md §8), independently of convert.py."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("encoder."):
            out[k[len("encoder.") :]] = v
        elif k == "decoder.mask_token":
            out["mask_token"] = v
        elif k == "decoder.pos_embed":
            out["decoder_pos_embed"] = v
        elif k.startswith("decoder."):
            sub, rest = k[len("decoder.") :].split(".", 1)
            out[f"decoder_{sub}.{rest}"] = v
        elif k.startswith("masker."):
            out["masking_net." + k[len("masker.") :]] = v
        else:
            raise AssertionError(k)
    if model.masker is not None:
        out["masking_net.pos_embed"] = torch.zeros(1, 1, model.encoder.embed_dim)
    return out


def _save_reference(model, path, **args):
    ns = argparse.Namespace(model="mae_vit_tiny_patch4", input_size=28, batch_size=256, lr=None, **args)
    torch.save({"model": _to_reference(model), "optimizer": {}, "epoch": 7, "scaler": {}, "args": ns}, path)
    return path


def _perturbed(method):
    model = tiny_pretrainer(method, seed=11)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return model.eval()


@pytest.mark.slow
def test_clmae_checkpoint_reproduces_outputs_and_losses(tmp_path, images):
    model = _perturbed("clmae")
    ckpt = _save_reference(model, tmp_path / "checkpoint-7.pth", mask_ratio=0.75, norm_pix_loss=False)
    folder = convert_checkpoint(ckpt, tmp_path / "out", num_heads=2, decoder_num_heads=2)
    full = load_pretraining_model(folder)
    assert full.method == "clmae"
    with torch.no_grad():
        a, b = full.forward_mae(images), model.forward_mae(images)
        assert (
            torch.equal(a["loss"], b["loss"])
            and torch.equal(a["pred"], b["pred"])
            and torch.equal(a["mask"], b["mask"])
        )
        a, b = full.forward_masker(images, -0.5), model.forward_masker(images, -0.5)
        for key in ("loss", "rec", "gauss", "kl", "div", "scores"):
            assert torch.equal(a[key], b[key]), key
        assert torch.equal(load_pretrained(folder)(images), model.encoder(images))
    assert "epoch 7" in (folder / "README.md").read_text()


@pytest.mark.slow
def test_mae_checkpoint_and_args(tmp_path, images):
    model = _perturbed("mae")
    model.config.norm_pix_loss = True  # the reference args say so: the converted model must follow them
    ckpt = _save_reference(model, tmp_path / "mae.pth", mask_ratio=0.75, norm_pix_loss=True)
    full = load_pretraining_model(convert_checkpoint(ckpt, tmp_path / "out", num_heads=2, decoder_num_heads=2))
    assert full.method == "mae" and full.masker is None and full.norm_pix_loss
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    with torch.no_grad():
        assert torch.equal(full.forward_mae(images, g1)["loss"], model.forward_mae(images, g2)["loss"])


@pytest.mark.slow
def test_encoder_only_checkpoint(tmp_path, images):
    model = _perturbed("mae")
    encoder_keys = {k: v for k, v in _to_reference(model).items() if not k.startswith(("decoder_", "mask_token"))}
    torch.save({"model": encoder_keys}, tmp_path / "enc.pth")
    folder = convert_checkpoint(tmp_path / "enc.pth", tmp_path / "out", num_heads=2)
    assert not (folder / "pretraining.safetensors").exists()
    with torch.no_grad():
        assert torch.equal(load_pretrained(folder)(images), model.encoder(images))


class Custom:
    """Any class outside the allow-list."""


def test_unsafe_pickle_is_refused(tmp_path):
    torch.save({"model": {}, "args": Custom()}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="cannot be loaded safely"):
        load_reference_checkpoint(tmp_path / "bad.pth")


@pytest.mark.slow
def test_bad_checkpoints(tmp_path):
    model = _perturbed("clmae")
    ref = _to_reference(model)
    torch.save({"model": {**ref, "head.weight": torch.zeros(10, 32)}}, tmp_path / "ft.pth")
    with pytest.raises(ValueError, match="not a pretraining checkpoint"):
        convert_checkpoint(tmp_path / "ft.pth", tmp_path / "o1", num_heads=2)
    (tmp_path / "trunc.pth").write_bytes((tmp_path / "ft.pth").read_bytes()[:100])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        convert_checkpoint(tmp_path / "trunc.pth", tmp_path / "o2")
    torch.save({"model": ref}, tmp_path / "ok.pth")
    with pytest.raises(ValueError, match="pass num_heads"):  # width 32 is not vit_tiny's: heads must be given
        convert_checkpoint(tmp_path / "ok.pth", tmp_path / "o3", name="vit_tiny_patch4_28")
    with pytest.raises(ValueError, match="no clmae architecture has this checkpoint's geometry"):
        convert_checkpoint(tmp_path / "ok.pth", tmp_path / "o4")


@pytest.mark.slow
def test_convert_command(tmp_path, images, capsys):
    import argparse as ap

    from clmae.hub.cli import register

    model = _perturbed("clmae")
    ckpt = _save_reference(model, tmp_path / "ref.pth", mask_ratio=0.75, norm_pix_loss=False)
    parser = ap.ArgumentParser(prog="clmae")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "convert",
            str(ckpt),
            str(tmp_path / "out"),
            "--num-heads",
            "2",
            "--decoder-num-heads",
            "2",
            "--license",
            "cc-by-nc-4.0",
            "--dataset",
            "imagenet-1k",
        ]
    )
    assert args.func(args) == 0
    assert "pretraining.safetensors" in capsys.readouterr().out
    card = (tmp_path / "out" / "README.md").read_text()
    assert "license: cc-by-nc-4.0" in card and "imagenet-1k" in card
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path / "out")(images), model.encoder(images))
