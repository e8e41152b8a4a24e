"""``transformers.pipeline("image-feature-extraction")`` on a bundled weight exported with ``--in-chans 3``: the
pipeline converts every image to RGB, so the export's RGB stem and three-value mean/std must give clmae's own
features of the greyscale image (docs/transformers.md)."""

import json

import pytest
import timm
import torch
from PIL import Image

import clmae
from clmae.cli import main
from clmae.data.fashion_mnist import SAMPLE_ROOT, load_fashion_mnist

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.usefixtures("one_thread")

# fp32 round-off: the RGB stem computes sum_c (w / 3) x where clmae computes w x, and 12 blocks carry the ~1e-7
# relative difference on; measured 1e-6 on the CLS token. A wrong stem, mean or resize differs by > 1e-2.
TOL = 1e-5


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf") / "vit_t_fmnist_rgb"
    assert main(["export", "vit_t_fmnist", str(folder), "--format", "transformers", "--in-chans", "3"]) == 0
    return folder


def clmae_tokens(images: list[Image.Image]) -> torch.Tensor:
    """clmae's tokens ``[N, 1 + L, D]`` of greyscale images, preprocessed as the weight's ``pretrained_cfg`` says
    (the documented timm way)."""
    encoder = clmae.load_pretrained("vit_t_fmnist")
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=encoder))
    with torch.no_grad():
        return encoder.forward_features(torch.stack([transform(img) for img in images]))


def assert_same_tokens(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """CLS tokens equal; patch tokens equal up to their order (ViTMAE shuffles the patches at every forward, even at
    mask ratio 0): each of ours is matched with its nearest, and the matching must be a permutation."""
    assert ours.shape == theirs.shape
    diff = (ours[:, 0] - theirs[:, 0]).abs().max().item()
    assert diff <= TOL, f"CLS tokens differ by {diff}"
    for a, b in zip(ours[:, 1:], theirs[:, 1:]):
        match = torch.cdist(a.double(), b.double()).argmin(1)
        assert sorted(match.tolist()) == list(range(a.shape[0]))
        diff = (a - b[match]).abs().max().item()
        assert diff <= TOL, f"patch tokens differ by {diff}"


def test_export_adapts_the_stem_as_timm_does(exported):
    config = json.loads((exported / "config.json").read_text())
    processor = json.loads((exported / "preprocessor_config.json").read_text())
    assert config["num_channels"] == 3 and config["clmae"]["in_chans_adapted_from"] == 1
    assert processor["do_convert_rgb"] is True
    assert processor["image_mean"] == [0.286] * 3 and processor["image_std"] == [0.353] * 3  # the weight's, repeated
    model = transformers.ViTMAEModel.from_pretrained(exported)
    rgb = model.embeddings.patch_embeddings.projection.weight
    grey = clmae.load_pretrained("vit_t_fmnist").patch_embed.proj.weight
    assert rgb.shape[1] == 3
    # the three channels' weights are equal and sum to the greyscale weight: grey replicated to RGB, same output
    assert torch.equal(rgb[:, 0], rgb[:, 1]) and torch.equal(rgb[:, 1], rgb[:, 2])
    assert (rgb.sum(1, keepdim=True) - grey).abs().max().item() <= 1e-6


def test_pipeline_features_equal_clmae_features(exported):
    images, _ = load_fashion_mnist("test", SAMPLE_ROOT)  # the bundled sample: 28 x 28 greyscale
    pil = [Image.fromarray(images[i].numpy(), mode="L") for i in range(3)]
    pipe = transformers.pipeline("image-feature-extraction", model=str(exported))
    theirs = torch.cat([pipe(img, return_tensors=True) for img in pil])  # each [1, 50, 192]
    assert_same_tokens(clmae_tokens(pil), theirs)
    # the pipeline's RGB conversion is what the export is for: the same image given as RGB gives the same features
    assert_same_tokens(clmae_tokens(pil[:1]), pipe(pil[0].convert("RGB"), return_tensors=True))


def pil_processor(folder):
    """The folder's image processor with PIL's resize (transformers 5.x: ``backend="pil"``, 4.x: the slow one)."""
    v5 = int(transformers.__version__.split(".")[0]) >= 5
    option = {"backend": "pil"} if v5 else {"use_fast": False}
    return transformers.AutoImageProcessor.from_pretrained(folder, **option)


@pytest.mark.parametrize("size,pil", [((56, 56), False), ((56, 84), False), ((69, 56), True), ((90, 63), True)])
def test_pipeline_resizes_as_clmae_does(exported, size, pil):
    """Larger greyscale images: the processor resizes (bilinear, short side to 28) and crops the centre as timm's
    transform does. A scale factor of 2 or 3 resizes to the same pixels with either of transformers' resizers; other
    factors need PIL's, clmae's (the pipeline's default torchvision resize differs by up to a grey level). The sizes
    crop an even number of pixels: torchvision rounds the offset of an odd one, transformers floors it (both are
    said in docs/transformers.md)."""
    images, _ = load_fashion_mnist("test", SAMPLE_ROOT)
    big = Image.fromarray(images[5].numpy(), mode="L").resize(size, Image.Resampling.BICUBIC)
    option = {"image_processor": pil_processor(exported)} if pil else {}
    pipe = transformers.pipeline("image-feature-extraction", model=str(exported), **option)
    assert_same_tokens(clmae_tokens([big]), pipe(big, return_tensors=True))


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--format", "transformers", "--in-chans", "3", "--decoder"], "decoder reconstructs"),
        (["--in-chans", "3"], "--in-chans goes with --format transformers"),
    ],
)
def test_in_chans_refusals_are_one_line(tmp_path, capsys, extra, match):
    out = tmp_path / "out"
    assert main(["export", "vit_t_fmnist", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (out / "config.json").exists()
