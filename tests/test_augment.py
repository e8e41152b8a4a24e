"""The on-device augmentation (clmae.data.transforms.augment) against torchvision's PIL pipeline, and the device-held
data sets (clmae.data.transforms.device) against the DataLoader path they replace."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from clmae.data import (
    SAMPLE_ROOT,
    DeviceImages,
    GlobalBatchSampler,
    build_pretraining_data,
    crop_params,
    item_seed,
    item_seeds,
    load_fashion_mnist,
    random_resized_crop,
    resized_crop,
    to_float,
)
from clmae.data.transforms.augment import uniform


def _ks(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    a, b = a.double().sort().values, b.double().sort().values
    grid = torch.cat([a, b]).unique()
    fa = torch.searchsorted(a, grid, right=True).double() / len(a)
    fb = torch.searchsorted(b, grid, right=True).double() / len(b)
    return float((fa - fb).abs().max())


def _torchvision_params(n: int, height: int, width: int) -> torch.Tensor:
    """``[n, 5]`` (top, left, h, w, flip) drawn by torchvision's own RandomResizedCrop + RandomHorizontalFlip."""
    torch.manual_seed(0)
    img = torch.zeros(1, height, width)
    rows = []
    for _ in range(n):
        i, j, h, w = T.RandomResizedCrop.get_params(img, scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3))
        rows.append((i, j, h, w, float(torch.rand(1) < 0.5)))
    return torch.tensor(rows, dtype=torch.float64)


def test_uniform_draws_are_uniform_distinct_and_depend_only_on_the_seed():
    seeds = torch.arange(200_000, dtype=torch.int64) * 1_000_003 + 17
    u = uniform(seeds, 4)
    assert u.dtype == torch.float64 and u.shape == (200_000, 4)
    assert u.min() > 0 and u.max() < 1
    assert u.mean(0).sub(0.5).abs().max() < 0.003  # sd of the mean: 0.29 / sqrt(2e5) = 0.00065
    assert u.var(0).sub(1 / 12).abs().max() < 0.001
    assert _ks(u[:, 0], torch.rand(200_000, dtype=torch.float64)) < 0.006  # critical value (p=0.001): 0.0062
    # neighbouring seeds and neighbouring draws are uncorrelated
    assert abs(torch.corrcoef(torch.stack([u[:-1, 0], u[1:, 0]]))[0, 1]) < 0.01
    assert abs(torch.corrcoef(torch.stack([u[:, 0], u[:, 1]]))[0, 1]) < 0.01
    assert len(torch.unique(u[:, 0])) == len(u)
    # a sample's draws do not depend on the other samples of the batch
    assert torch.equal(uniform(seeds[123:124], 4), u[123:124])
    assert torch.equal(uniform(seeds.flip(0), 4), u.flip(0))


@pytest.mark.parametrize("height,width", [(28, 28), (375, 500), (12, 200)])
def test_crop_parameters_follow_torchvisions_distribution(height, width):
    n = 6000
    ref = _torchvision_params(n, height, width)
    ours = torch.stack([p.double() for p in crop_params(torch.arange(n, dtype=torch.int64), height, width)], 1)
    critical = 1.95 * math.sqrt(2 / n)  # KS at p = 0.001
    for k, name in enumerate(["top", "left", "h", "w"]):
        assert _ks(ours[:, k], ref[:, k]) < critical, name
    area = ours[:, 2] * ours[:, 3] / (height * width)
    assert _ks(area, ref[:, 2] * ref[:, 3] / (height * width)) < critical
    assert abs(ours[:, 4].mean() - 0.5) < 0.03
    # every box lies inside the image
    assert (ours[:, 0] >= 0).all() and (ours[:, 0] + ours[:, 2] <= height).all()
    assert (ours[:, 1] >= 0).all() and (ours[:, 1] + ours[:, 3] <= width).all()
    if width / height > 4 / 3 * 3:  # mostly the fallback: whole height, width clamped to the ratio, centred
        fallback = ours[:, 2] == height
        assert fallback.float().mean() > 0.5
        assert (ours[fallback, 3] == round(height * 4 / 3)).all()


def _pil_reference(img: Image.Image, params: tuple[torch.Tensor, ...], k: int, size: int) -> torch.Tensor:
    top, left, h, w, flip = (int(p[k]) for p in params)
    out = TF.resized_crop(img, top, left, h, w, [size, size], InterpolationMode.BICUBIC)
    return TF.to_tensor(TF.hflip(out) if flip else out)


def test_resized_crop_equals_torchvisions_pil_pipeline_on_fashion_mnist():
    images, _ = load_fashion_mnist("train", SAMPLE_ROOT)
    x = images[:300].unsqueeze(1)
    params = crop_params(torch.arange(300, dtype=torch.int64) + 99, 28, 28)
    out = resized_crop(x, *params, 28)
    ref = torch.stack([_pil_reference(Image.fromarray(images[k].numpy(), "L"), params, k, 28) for k in range(300)])
    diff = (out - ref).abs() * 255
    assert diff.max() <= 2.001  # PIL rounds its fixed-point sums once per pass; so do we, in floating point
    assert diff.mean() < 0.05
    assert params[4].any() and not params[4].all()


def test_resized_crop_shrinking_and_stretching_colour_images_equals_pil():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 60, 90), dtype=torch.uint8, generator=g)
    params = crop_params(torch.arange(6, dtype=torch.int64), 60, 90)
    for size in (24, 96):  # antialiased shrinking, and stretching
        out = resized_crop(x, *params, size)
        for k in range(6):
            ref = _pil_reference(Image.fromarray(x[k].permute(1, 2, 0).numpy()), params, k, size)
            assert (out[k] - ref).abs().max() * 255 <= 2.001


def test_float_images_are_resampled_without_rounding_and_identity_boxes_change_nothing():
    x = torch.randn(3, 2, 16, 16, dtype=torch.float64).float()
    whole = [torch.zeros(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64)]
    full = [torch.full((3,), 16), torch.full((3,), 16)]
    same = resized_crop(x, *whole, *full, torch.tensor([False, True, False]), 16)
    torch.testing.assert_close(same[0], x[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(same[1], x[1].flip(-1), atol=1e-6, rtol=0)
    # a half-size box stretched 2x: bicubic, so a linear ramp stays a linear ramp inside the box
    ramp = torch.arange(16.0).view(1, 1, 1, 16).expand(1, 1, 16, 16).contiguous()
    out = resized_crop(
        ramp, torch.tensor([4]), torch.tensor([4]), torch.tensor([8]), torch.tensor([8]), torch.tensor([False]), 16
    )
    centre = out[0, 0, 8, 3:13]
    expected = 4 + (torch.arange(3, 13) + 0.5) / 2 - 0.5
    torch.testing.assert_close(centre, expected, atol=1e-4, rtol=0)


def test_random_resized_crop_of_a_sample_does_not_depend_on_its_batch():
    images, _ = load_fashion_mnist("train", SAMPLE_ROOT)
    x = images[:64].unsqueeze(1)
    seeds = item_seeds(3, 5, torch.arange(64))
    batch = random_resized_crop(x, seeds, 28)
    alone = torch.cat([random_resized_crop(x[k : k + 1], seeds[k : k + 1], 28) for k in (0, 17, 63)])
    assert torch.equal(alone, batch[[0, 17, 63]])
    assert not torch.equal(random_resized_crop(x, seeds + 1, 28), batch)
    with pytest.raises(ValueError, match="one seed per image"):
        random_resized_crop(x, seeds[:3], 28)


def test_item_seeds_equal_item_seed():
    positions = torch.tensor([0, 1, 5, 1000, 2**31])
    for seed, epoch in [(0, 0), (7, 3), (2**40, 2**20)]:
        expected = [item_seed(seed, epoch, int(p)) for p in positions]
        assert item_seeds(seed, epoch, positions).tolist() == expected


def test_sampler_plan_holds_the_pairs_iteration_yields():
    ds = list(range(103))
    for rank in (0, 1):
        sampler = GlobalBatchSampler(ds, batch_size=5, accum_iter=2, num_replicas=2, rank=rank, seed=4)
        sampler.set_epoch(3, start_step=2)
        pairs = list(sampler)
        batches = list(zip(*sampler.plan()))
        assert len(batches) * 5 == len(pairs)
        flat = [(int(i), int(s)) for index, seeds in batches for i, s in zip(index, seeds)]
        assert flat == pairs


def test_device_images_without_augmentation_equal_the_old_float_tensors_bit_for_bit():
    images, _ = load_fashion_mnist("train", SAMPLE_ROOT)
    data = build_pretraining_data("fmnist-sample", 1, 28)
    assert isinstance(data.dataset, DeviceImages)
    index = torch.tensor([5, 0, 999, 5])
    assert torch.equal(data.dataset.batch(index), to_float(images)[index])
    assert torch.equal(data.dataset[7], to_float(images)[7])


def test_augmented_device_images_are_normalised_crops_drawn_from_the_sample_seed():
    images, _ = load_fashion_mnist("train", SAMPLE_ROOT)
    data = build_pretraining_data("fmnist-sample", 1, 28, augment=True)
    assert "augmented" in data.description
    index, seeds = torch.tensor([3, 8]), torch.tensor([11, 12], dtype=torch.int64)
    got = data.dataset.batch(index, seeds)
    params = crop_params(seeds, 28, 28)
    for k in range(2):
        one = (params[0][k : k + 1], params[1][k : k + 1], params[2][k : k + 1], params[3][k : k + 1])
        pil = Image.fromarray(images[int(index[k])].numpy(), "L")
        ref = _pil_reference(pil, (*one, params[4][k : k + 1]), 0, 28)
        mean, std = data.mean[0], data.std[0]
        assert ((got[k] * std + mean) - ref).abs().max() * 255 <= 2.01
    assert torch.equal(data.dataset.batch(index, seeds), got)
    # pictures show the images as they are
    assert torch.equal(data.preview[3], to_float(images)[3])
    with pytest.raises(ValueError, match="seed"):
        data.dataset.batch(index)


def test_synthetic_sets_are_held_whole_and_refuse_sizes_that_do_not_fit_in_memory():
    data = build_pretraining_data("synthetic:10", 3, 16, seed=2)
    assert isinstance(data.dataset, DeviceImages) and data.dataset.images.shape == (10, 3, 16, 16)
    from clmae.data import SyntheticImages

    assert torch.equal(data.dataset[4], SyntheticImages(10, (3, 16, 16), 2)[4])
    with pytest.raises(ValueError, match="GiB"):
        build_pretraining_data("synthetic:100000000", 3, 224)


def test_an_epochs_crop_plan_gives_the_batches_drawn_one_at_a_time():
    data = build_pretraining_data("fmnist-sample", 1, 28, augment=True).dataset
    sampler = GlobalBatchSampler(data, batch_size=16, seed=5)
    sampler.set_epoch(2)
    indices, seeds = sampler.plan()
    crops = data.crop_plan(seeds)
    assert crops[0].shape == seeds.shape
    for k in (0, 7, len(indices) - 1):
        assert torch.equal(data.batch(indices[k], crops=[c[k] for c in crops]), data.batch(indices[k], seeds[k]))
