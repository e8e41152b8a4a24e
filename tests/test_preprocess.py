"""clmae.data.transforms.numbers: normalisation, default statistics, evaluation geometry and PIL mode, checked against
hand-computed values and against torchvision's own transforms."""

import pytest
import torch
import torchvision.transforms.functional as TF
from PIL import Image
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision import transforms as T

from clmae.data import to_float
from clmae.data.fashion_mnist import MEAN, STD
from clmae.data.transforms import numbers as pre


def _pixels(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_normalize_a_2x2_image_by_hand():
    # (pixel / 255 - 0.5) / 0.25: 0 -> -2, 255 -> 2, 51 (0.2) -> -1.2, 102 (0.4) -> -0.4
    img = torch.tensor([[[0, 255], [51, 102]]], dtype=torch.uint8)
    out = pre.normalize(img, (0.5,), (0.25,))
    assert out.dtype == torch.float32 and out.shape == (1, 2, 2)
    torch.testing.assert_close(out, torch.tensor([[[-2.0, 2.0], [-1.2, -0.4]]]), rtol=0, atol=1e-6)
    # per channel: channel 0 with (0, 1), channel 1 with (1, 0.5)
    two = torch.tensor([[[0, 255]], [[255, 51]]], dtype=torch.uint8)
    out = pre.normalize(two, (0.0, 1.0), (1.0, 0.5))
    torch.testing.assert_close(out, torch.tensor([[[0.0, 1.0]], [[0.0, -1.6]]]), rtol=0, atol=1e-6)


def test_denormalize_by_hand_and_as_normalizes_inverse():
    # x * std + mean per channel: channel 0 with (0.5, 0.25), channel 1 with (0, 2)
    x = torch.tensor([[[[-2.0, 2.0]], [[0.5, -1.0]]]])
    torch.testing.assert_close(
        pre.denormalize(x, (0.5, 0.0), (0.25, 2.0)), torch.tensor([[[[0.0, 1.0]], [[1.0, -2.0]]]]), rtol=0, atol=0
    )
    img = _pixels((2, 3, 7, 5), seed=3)
    back = pre.denormalize(
        pre.normalize(img, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD), IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    )
    torch.testing.assert_close(back, img.float() / 255, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("mean", "std"),
    [((0.2860,), (0.3530,)), (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD), ((0.5, 0.4, 0.3), (0.2, 0.25, 0.3))],
)
def test_normalize_is_torchvisions_to_tensor_and_normalize_bit_for_bit(mean, std):
    images = _pixels((6, len(mean), 9, 7))
    expected = torch.stack([TF.normalize(TF.to_tensor(TF.to_pil_image(im)), mean, std) for im in images])
    assert torch.equal(pre.normalize(images, mean, std), expected)  # a batch
    assert torch.equal(pre.normalize(images[2], mean, std), expected[2])  # one image
    # float input in [0, 1]: torchvision's F.normalize alone
    x = images.float() / 255
    assert torch.equal(pre.normalize(x, mean, std), TF.normalize(x, mean, std))


def test_one_value_serves_every_channel():
    images = _pixels((2, 3, 4, 4))
    assert torch.equal(pre.normalize(images, (0.3,), (0.2,)), pre.normalize(images, (0.3,) * 3, (0.2,) * 3))


def test_to_float_and_the_old_scalar_arithmetic_agree_on_the_cpu():
    # Fashion-MNIST's reference was (x / 255 - MEAN) / STD with Python numbers; the tensor form gives the same bits
    # on the CPU, so the bundled weights' golden inputs do not change.
    images = _pixels((50, 28, 28))
    old = (images.unsqueeze(1).float() / 255.0 - MEAN) / STD
    assert torch.equal(to_float(images), old)
    assert torch.equal(pre.normalize(images.unsqueeze(1), (MEAN,), (STD,)), old)


def test_normalize_refuses_a_wrong_number_of_values():
    with pytest.raises(ValueError, match="one value per channel"):
        pre.normalize(_pixels((2, 3, 4, 4)), (0.1, 0.2), (0.3, 0.4))
    with pytest.raises(ValueError, match="one value per channel"):
        pre.normalize(_pixels((2, 1, 4, 4)), (0.1,), (0.3, 0.4))


def test_statistics_are_made_once_per_device_and_dtype():
    pre._stats.cache_clear()
    x = _pixels((2, 3, 4, 4))
    pre.normalize(x, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    pre.normalize(x, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert (pre._stats.cache_info().misses, pre._stats.cache_info().hits) == (1, 1)
    out = pre.normalize(x.double() / 255, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert out.dtype == torch.float64 and pre._stats.cache_info().misses == 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_mean_and_std_give_the_cpus_bits_on_cuda():
    # divided by device tensors, not Python numbers (which CUDA turns into a multiplication by the reciprocal)
    x = _pixels((64, 1, 28, 28)).float() / 255
    for mean, std in (((MEAN,), (STD,)), (IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)):
        xc = x.expand(-1, len(mean), -1, -1)
        assert torch.equal(pre.normalize(xc.cuda(), mean, std).cpu(), pre.normalize(xc, mean, std))


def test_grey_fallback_is_imagenets_average_whichever_way_it_is_rounded():
    # models/factory.py rounded the average to 4 places, data/pretraining.py did not: the same float, so no recorded
    # configuration or output changes with one value.
    unrounded_mean, unrounded_std = sum(IMAGENET_DEFAULT_MEAN) / 3, sum(IMAGENET_DEFAULT_STD) / 3
    assert pre.GREY_MEAN == (unrounded_mean,) == (0.449,)
    assert pre.GREY_STD == (unrounded_std,) == (0.226,)
    assert pre.default_mean_std(1) == (pre.GREY_MEAN, pre.GREY_STD)
    assert pre.default_mean_std(3) == (tuple(IMAGENET_DEFAULT_MEAN), tuple(IMAGENET_DEFAULT_STD))


def test_fit_channels():
    assert pre.fit_channels((0.1, 0.2, 0.3), 3) == (0.1, 0.2, 0.3)
    assert pre.fit_channels((0.1, 0.2, 0.6), 1) == (0.3,)
    assert pre.fit_channels((0.2860,), 3) == (0.286, 0.286, 0.286)
    assert pre.fit_channels((0.12345, 0.12346), 1) == (0.1235,)  # rounded to 4 places


def test_greyscale_models_and_image_files_get_the_same_fallback(tmp_path):
    from clmae.data import build_pretraining_data
    from clmae.models import create_encoder

    cfg = create_encoder("vit_tiny_patch16_224", in_chans=1, depth=1, img_size=32).pretrained_cfg
    assert (tuple(cfg["mean"]), tuple(cfg["std"])) == (pre.GREY_MEAN, pre.GREY_STD)
    Image.fromarray(_pixels((40, 40)).numpy(), "L").save(tmp_path / "a.png")
    data = build_pretraining_data(str(tmp_path), in_chans=1, img_size=32)
    assert (tuple(data.mean), tuple(data.std)) == (pre.GREY_MEAN, pre.GREY_STD)


@pytest.mark.parametrize(("height", "width"), [(300, 400), (400, 300), (224, 224), (256, 256), (97, 310), (33, 33)])
@pytest.mark.parametrize(("size", "crop_pct"), [(224, 0.875), (32, 1.0), (28, 0.9)])
def test_eval_geometry_is_torchvisions_resize_and_centre_crop(height, width, size, crop_pct):
    assert pre.eval_resize(size, crop_pct) == int(size / crop_pct)
    img = Image.fromarray(_pixels((height, width)).numpy(), "L")
    resized = T.Resize(pre.eval_resize(size, crop_pct))(img)
    new_h, new_w, top, left = pre.eval_geometry(height, width, size, crop_pct)
    assert resized.size == (new_w, new_h)
    expected = T.CenterCrop(size)(resized)
    assert expected.tobytes() == resized.crop((left, top, left + size, top + size)).tobytes()


def test_eval_resize_by_hand():
    assert pre.eval_resize(224, 0.875) == 256
    assert pre.eval_resize(28, 1.0) == 28
    assert pre.EVAL_CROP_PCT == 0.875
    with pytest.raises(ValueError, match="crop_pct"):
        pre.eval_resize(224, 0)


def test_eval_is_identity():
    assert pre.eval_is_identity((28, 28), 28, 1.0)
    assert not pre.eval_is_identity((28, 28), 28, 0.875)  # resized to 32 first
    assert pre.eval_is_identity((28, 28), 28, 0.98)  # int(28 / 0.98) = 28: no pixel moves
    assert not pre.eval_is_identity((32, 32), 28, 1.0)
    assert not pre.eval_is_identity((28, 30), 28, 1.0)
    assert not pre.eval_is_identity((1, 28, 28), 28, 1.0)


def test_pil_mode():
    assert pre.pil_mode(1) == "L" and pre.pil_mode(3) == "RGB"
    with pytest.raises(ValueError, match="1 or 3"):
        pre.pil_mode(2)
