"""ImageNet-style folders (``ROOT/CLASS/IMAGE.jpg``) read with torchvision's ``ImageFolder``, images only."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder

_LAYOUT = "an ImageNet-style tree ROOT/CLASS/IMAGE.jpg (e.g. imagenet/train/n01440764/n01440764_10026.JPEG)"


def _load_rgb(path: str) -> Image.Image:
    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except OSError as e:  # PIL's UnidentifiedImageError and truncated files are OSErrors
        raise ValueError(f"cannot read image {path}: {e}; remove or replace the file") from None


class ImageFolderImages(Dataset):
    """The PIL images of a torchvision ``ImageFolder`` (labels dropped), with errors that name the bad file.

    Args:
        root: the folder.
        check_first: open the first image now, so that an unreadable folder fails before training starts.
    """

    def __init__(self, root: str | os.PathLike, check_first: bool = True) -> None:
        root = Path(root)
        if not root.exists():
            raise FileNotFoundError(f"data folder {root} does not exist; expected {_LAYOUT}")
        if not root.is_dir():
            raise ValueError(f"data {root} is a file, not a folder; expected {_LAYOUT}")
        try:
            self.folder = ImageFolder(str(root), loader=_load_rgb)
        except FileNotFoundError as e:  # torchvision: no class folder, or no image file in them
            raise FileNotFoundError(f"no images found in {root} ({e}); expected {_LAYOUT}") from None
        if check_first:
            self[0]

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> Image.Image:
        return self.folder[index][0]
