"""Turn a data spec (:mod:`clmae.data.spec`) into a pretraining data set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .fashion_mnist import DEBIAN_ROOT, SAMPLE_ROOT, load_fashion_mnist
from .fashion_mnist import MEAN as FMNIST_MEAN
from .fashion_mnist import STD as FMNIST_STD
from .hfdataset import HFDatasetImages
from .imagefolder import ImageFolderImages
from .images import ImageSource
from .sampler import SeededDataset
from .spec import FORMS, DataSpec, load_ref, parse_data_spec, specs
from .synthetic import SyntheticImages
from .transforms.device import DeviceImages
from .transforms.numbers import default_mean_std, pil_mode
from .transforms.pil import eval_transform, pretrain_transform
from .webdataset import WebDatasetImages

SYNTHETIC_MAX_BYTES = 4 << 30  # synthetic sets are built whole in memory


@dataclass
class PretrainingData:
    """A pretraining data set and what is needed to show its images.

    Attributes:
        dataset: normalised ``[C, H, W]`` tensors indexed by the sampler's ``(index, seed)`` pairs: a
            :class:`~clmae.data.DeviceImages` (small sets held whole, on the training device; its
            ``batches`` serves whole micro-batches) or a :class:`~clmae.data.sampler.SeededDataset` of image files
            (for a ``DataLoader``).
        preview: a deterministic (unaugmented) version of the same images, for pictures.
        mean: per-channel normalisation mean.
        std: per-channel normalisation std.
        description: what was loaded, for the log.
    """

    dataset: DeviceImages | SeededDataset
    preview: DeviceImages | SeededDataset
    mean: Sequence[float]
    std: Sequence[float]
    description: str


def _synthetic_tensor(n: int, shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    need = n * shape[0] * shape[1] * shape[2] * 4
    if need > SYNTHETIC_MAX_BYTES:
        raise ValueError(
            f"synthetic:{n} at {shape[0]}x{shape[1]}x{shape[2]} would take {need / 2**30:.1f} GiB; ask for fewer "
            f"images (at most {SYNTHETIC_MAX_BYTES * n // need}) or use a smaller model"
        )
    source = SyntheticImages(n, shape, seed)
    return torch.stack([source[i] for i in range(n)])


def _check_shape(spec: str, shape: tuple[int, int, int], in_chans: int, img_size: tuple[int, int]) -> None:
    if (shape[0], *shape[1:]) != (in_chans, *img_size):
        raise ValueError(
            f"data {spec!r} gives {shape[0]}x{shape[1]}x{shape[2]} images but the model expects "
            f"{in_chans}x{img_size[0]}x{img_size[1]}; pick a matching model (e.g. vit_tiny_patch4_28 for "
            f"Fashion-MNIST, a *_224 model for ImageNet folders), or give model_kwargs.in_chans={shape[0]} "
            f"model_kwargs.img_size={shape[1]} (weights from init= are adapted to them)"
        )


def build_pretraining_data(
    spec: str,
    in_chans: int,
    img_size: int | Sequence[int],
    seed: int = 0,
    *,
    skip_unreadable: bool = False,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    augment: bool | None = None,
) -> PretrainingData:
    """The data set named by ``spec``, checked against the model's input.

    Args:
        spec: a data spec, one of the forms of :data:`clmae.data.spec.FORMS` (``fmnist``, ``synthetic:N``,
            ``imagefolder:FOLDER`` / ``FOLDER``, ``wds:SHARDS``, ``hfds:FOLDER[#SPLIT]``, ...); a form's ``reader``
            reads its image files. Fashion-MNIST and synthetic sets are held whole in one tensor
            (:class:`~clmae.data.DeviceImages`); image files are converted to the model's channels (RGB, or
            greyscale for 1 channel).
        in_chans: the model's input channels.
        img_size: the model's input size.
        seed: seed of the synthetic set.
        skip_unreadable: image files only: decode every image once now and leave out those that fail (their count
            is in the description); by default only the first image is checked now and a bad one stops the run
            when it is read, naming the file.
        mean: normalisation of image files, per channel; pass the model's ``pretrained_cfg["mean"]`` so that the
            exported weights' preprocessing is the one they were trained with (default: ImageNet's, or its average
            for 1 channel).
        std: as ``mean``.
        augment: MAE's augmentation (RandomResizedCrop(scale 0.2-1) + horizontal flip) of every image read;
            default: on for image files, off for Fashion-MNIST and synthetic images. Image files without it are
            resized and centre-cropped (the evaluation transform).

    Returns:
        A :class:`PretrainingData`.
    """
    size = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    parsed = parse_data_spec(spec)
    if parsed.kind == "fmnist":
        root = parsed.root
        images, _ = load_fashion_mnist("train", root=root)
        _check_shape(spec, (1, *images.shape[1:]), in_chans, size)
        ds = DeviceImages(images.unsqueeze(1), (FMNIST_MEAN,), (FMNIST_STD,), size[0], augment=bool(augment))
        where = {SAMPLE_ROOT: "bundled sample", DEBIAN_ROOT: "Debian's dataset-fashion-mnist"}.get(root, root)
        what = f"Fashion-MNIST train ({where}), {len(ds)}" + (", augmented" if augment else "")
        return PretrainingData(ds, ds.without_augmentation(), (FMNIST_MEAN,), (FMNIST_STD,), what)
    if parsed.kind == "synthetic":
        n = parsed.count
        if size[0] != size[1] and augment:
            raise ValueError(f"augmentation crops squares; a model of {size[0]}x{size[1]} px does not fit")
        images = _synthetic_tensor(n, (in_chans, *size), seed)
        ds = DeviceImages(images, (0.0,) * in_chans, (1.0,) * in_chans, size[0], augment=bool(augment))
        what = f"{n} synthetic images" + (", augmented" if augment else "")
        return PretrainingData(ds, ds.without_augmentation(), ds.mean, ds.std, what)
    source, what = _image_source(spec, parsed)  # "no images" first: it is the likelier mistake
    source.mode = pil_mode(in_chans)
    if size[0] != size[1]:
        raise ValueError(f"image files are cropped to squares; a model of {size[0]}x{size[1]} px does not fit")
    found = len(source)
    if skip_unreadable:
        dropped = source.drop_unreadable()
        if not len(source):
            raise ValueError(f"none of the {found} images in {what} can be decoded; check the files")
        what += f", {len(source)} images ({dropped} unreadable left out)"
    else:
        source[0]  # fails now, naming the file, if the data is not images at all
        what += f", {found} images"
    if mean is None or std is None:
        mean, std = default_mean_std(in_chans)
    if not len(mean) == len(std) == in_chans:
        raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} need one value per channel ({in_chans})")
    mean, std = tuple(mean), tuple(std)
    train_transform = eval_transform if augment is False else pretrain_transform
    return PretrainingData(
        SeededDataset(source, train_transform(size[0], mean, std)),
        SeededDataset(source, eval_transform(size[0], mean, std)),
        mean,
        std,
        what,
    )


def _image_source(spec: str, parsed: DataSpec) -> tuple[ImageSource, str]:
    form = FORMS[parsed.kind]
    if form.reader is None:
        raise ValueError(f"data {spec!r}: the form {form.syntax} has no reader of image files")
    return load_ref(form.reader)(parsed)


def folder_source(parsed: DataSpec) -> tuple[ImageSource, str]:
    """The reader of ``imagefolder:FOLDER``: every image file under the folder."""
    if not parsed.root.exists():
        raise FileNotFoundError(
            f"data {parsed.spec!r}: {parsed.root} is not a folder that exists; give one of: {specs()}"
        )
    return ImageFolderImages(parsed.root), f"image folder {parsed.root}"


def wds_source(parsed: DataSpec) -> tuple[ImageSource, str]:
    """The reader of ``wds:SHARDS``."""
    return WebDatasetImages(parsed.root), f"WebDataset shards {parsed.spec[4:]}"


def hfds_source(parsed: DataSpec) -> tuple[ImageSource, str]:
    """The reader of ``hfds:FOLDER[#SPLIT]``."""
    source = HFDatasetImages(parsed.root, parsed.split)
    split = f" split {source.split}" if source.split else ""
    return source, f"Hugging Face data set {parsed.root}{split}"
