"""Evaluation data: Fashion-MNIST (official train/test split), its bundled sample, or an ImageFolder with train/, val/.

A data set is named by a spec string:

* ``fmnist`` -- Fashion-MNIST from Debian's ``/usr/share/datasets/fashion-mnist`` (60,000 train / 10,000 test);
  ``fmnist:/folder`` reads the four IDX files from another folder.
* ``fmnist-sample`` -- the 1,000 + 1,000 image subset bundled with clmae (runs anywhere, in seconds).
* ``imagefolder:/folder`` (or just ``/folder``) -- ``/folder/train/<class>/*.png`` and ``/folder/val/<class>/*``,
  read with torchvision's ``ImageFolder``.

Images are PIL images until the transform: the evaluation transform (resize -> center-crop -> normalise) built
from the model's ``pretrained_cfg``, or a training transform for the linear probe and fine-tuning.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch.utils.data import Dataset, Subset

from ..data.fashion_mnist import CLASSES, load_fashion_mnist
from ..data.images import read_image
from ..data.spec import FORMS, DataSpec, load_ref, parse_data_spec, specs
from ..data.walk import walk_files
from ..models import FMNIST_CFG, SMALL_RGB_CFG

SPLITS = ("train", "val")
# Preprocessing of raw pixels (no model to ask): the whole image, normalised, as the small architectures'.
_FMNIST_CFG, _FOLDER_CFG = FMNIST_CFG, SMALL_RGB_CFG


class TensorImages(Dataset):
    """uint8 images ``[N, H, W]`` with labels, served as PIL images of ``mode`` through ``transform``."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform: Callable, mode: str) -> None:
        self.images, self.labels, self.transform, self.mode = images, labels, transform, mode

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[i].numpy(), "L")
        if self.mode != "L":
            img = img.convert(self.mode)
        return self.transform(img), int(self.labels[i])


@dataclass
class EvalData:
    """A resolved data spec.

    Attributes:
        spec: the spec as given.
        kind: ``"fmnist"`` or ``"imagefolder"``.
        root: the folder read.
        classes: class names; their index is the label.
        default_cfg: preprocessing for models without a ``pretrained_cfg`` (raw pixels).
        fingerprint: short hash of what was read (file names and sizes), part of the feature-cache key.
    """

    spec: str
    kind: str
    root: Path
    classes: list[str]
    default_cfg: dict[str, Any]
    fingerprint: str

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def dataset(self, split: str, transform: Callable, mode: str = "L", limit: int | None = None) -> Dataset:
        """The ``split`` (``"train"`` or ``"val"``) as a dataset of ``(transform(image), label)``.

        Args:
            split: ``"train"`` or ``"val"`` (Fashion-MNIST's official test split).
            transform: applied to each PIL image.
            mode: PIL mode the images are converted to first (``"L"`` for 1-channel models, ``"RGB"`` for 3).
            limit: keep a fixed random subset of this many images (seed 0, the same for every run), or all.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if self.kind == "fmnist":
            images, labels = load_fashion_mnist("train" if split == "train" else "test", self.root)
            ds: Dataset = TensorImages(images, labels, transform, mode)
        else:

            def load(path: str) -> Image.Image:
                return read_image(path, mode)

            ds = _image_folder()(str(self.root / split), transform=transform, loader=load)
            if ds.classes != self.classes:
                raise ValueError(
                    f"{self.root}/train and {self.root}/val must have the same class folders, got {self.classes} and "
                    f"{ds.classes}"
                )
        return subset(ds, limit)

    def tensors(self, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The ``split`` as uint8 images ``[N, H, W]`` and int64 labels ``[N]`` -- the same images, labels and subset
        as :meth:`dataset` -- for data sets held as one tensor (Fashion-MNIST); ``None`` for image folders.
        """
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if self.kind != "fmnist":
            return None
        images, labels = load_fashion_mnist("train" if split == "train" else "test", self.root)
        keep = subset_indices(images.shape[0], limit)
        return (images, labels) if keep is None else (images[keep], labels[keep])


def _image_folder() -> type:
    """torchvision's ``ImageFolder`` listing each class folder with clmae's walk (:mod:`clmae.data.walk`), which ends
    on link cycles; the files in torchvision's order."""
    from torchvision.datasets import ImageFolder
    from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension

    class Folder(ImageFolder):
        @staticmethod
        def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):
            valid = is_valid_file or (lambda path: has_file_allowed_extension(path, extensions or IMG_EXTENSIONS))
            samples = []
            for name, index in sorted(class_to_idx.items()):
                folder = Path(directory, name)
                if folder.is_dir():
                    parts = walk_files(folder, hidden=True)
                    paths = sorted((os.path.join(folder, *p[:-1]), p[-1]) for p in parts)  # as sorted(os.walk)
                    samples += [(os.path.join(d, f), index) for d, f in paths if valid(os.path.join(d, f))]
            filled = {index for _, index in samples}
            empty = sorted(name for name, index in class_to_idx.items() if index not in filled)
            if empty and not allow_empty:
                raise FileNotFoundError(f"found no image in class folder(s) {', '.join(empty)} of {directory}")
            return samples

    return Folder


def subset_indices(n: int, limit: int | None) -> torch.Tensor | None:
    """The indices (ascending) of :func:`subset`'s fixed random subset of ``n`` items, or ``None`` for all of them."""
    if limit is None or limit >= n:
        return None
    if limit < 1:
        raise ValueError(f"a subset limit must be a positive number of images, got {limit}")
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit].sort().values


def subset(ds: Dataset, limit: int | None) -> Dataset:
    """A fixed random subset (seed 0) of ``limit`` items in their original order; ``ds`` if ``limit`` is None."""
    keep = subset_indices(len(ds), limit)
    return ds if keep is None else Subset(ds, keep.tolist())


def _fingerprint(files: list[Path], root: Path) -> str:
    items = sorted((str(f.relative_to(root)), f.stat().st_size) for f in files)
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()[:16]


def resolve_data(spec: str) -> EvalData:
    """Resolve a data spec (see the module docstring) into an :class:`EvalData`; clear errors for bad specs.

    The form's ``eval_reader`` (:data:`clmae.data.spec.FORMS`) reads it; a form without one has no labels.
    """
    parsed = parse_data_spec(spec)
    form = FORMS[parsed.kind]
    if not form.labelled:  # synthetic:N, and any unlabelled kind
        raise ValueError(
            f"{spec!r} has no labels to evaluate with; use {specs(labelled=True)} (FOLDER/train/CLASS/IMAGE and "
            "FOLDER/val/CLASS/IMAGE)"
        )
    return load_ref(form.eval_reader)(spec, parsed)


def read_imagefolder(spec: str, parsed: DataSpec) -> EvalData:
    """The evaluation reader of ``imagefolder:FOLDER``: ``FOLDER/train/CLASS/IMAGE`` and ``FOLDER/val/CLASS/IMAGE``."""
    root = parsed.root
    if not root.is_dir():
        raise FileNotFoundError(
            f"data {spec!r}: {root} is not a folder. Use 'fmnist', 'fmnist-sample' or an ImageFolder root that holds "
            "train/<class>/* and val/<class>/*"
        )
    missing = [s for s in SPLITS if not (root / s).is_dir()]
    if missing:
        raise FileNotFoundError(f"ImageFolder {root} has no {' or '.join(missing)} folder; it needs train/ and val/")
    classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{root}/train has no class folders; put images in train/<class>/ and val/<class>/")
    files = [root.joinpath(s, *parts) for s in SPLITS for parts in walk_files(root / s, hidden=True, warn=None)]
    return EvalData(spec, "imagefolder", root, classes, dict(_FOLDER_CFG), _fingerprint(files, root))


def read_fmnist(spec: str, parsed: DataSpec) -> EvalData:
    """The evaluation reader of ``fmnist``: the official train and test splits."""
    root = parsed.root
    load_fashion_mnist("test", root)  # fails early, with the install hint, if the files are missing
    files = [f for f in root.iterdir() if f.is_file() and "idx" in f.name]
    return EvalData(spec, "fmnist", root, list(CLASSES), dict(_FMNIST_CFG), _fingerprint(files, root))
