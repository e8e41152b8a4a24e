"""Folders of images for pretraining: flat or nested to any depth, class folders or not (labels are not used)."""

from __future__ import annotations

import os
from pathlib import Path

from .images import IMAGE_EXTENSIONS, ImageSource
from .walk import walk_files


def find_images(root: str | os.PathLike) -> list[Path]:
    """The image files under ``root``, at any depth, in a fixed order.

        Files with an extension of :data:`~clmae.data.images.IMAGE_EXTENSIONS` (any case) count; hidden files and
        folders (names starting with ``.``) are skipped; symbolic links are followed, each real folder read once
    (:func:`~clmae.data.walk.walk_files`). The order is that of the paths
        relative to ``root``, compared folder by folder, so it is the same on every machine.

        Raises:
            FileNotFoundError: ``root`` does not exist, or holds no image file.
            ValueError: ``root`` is a file.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"data folder {root} does not exist; give a folder of images")
    if not root.is_dir():
        raise ValueError(f"data {root} is a file, not a folder; give the folder that holds the images")
    found = [parts for parts in walk_files(root) if parts[-1].lower().endswith(IMAGE_EXTENSIONS)]
    if not found:
        raise FileNotFoundError(
            f"no images found in {root} (looked for {', '.join(IMAGE_EXTENSIONS)} at any depth, e.g. a flat folder "
            "or an ImageNet-style ROOT/CLASS/IMAGE.jpg tree)"
        )
    return [root.joinpath(*parts) for parts in found]


class ImageFolderImages(ImageSource):
    """The images of a folder (see :func:`find_images`) as PIL images of ``mode``.

    Args:
        root: the folder.
        mode: PIL mode of the images served (``"RGB"`` or ``"L"``).
    """

    def __init__(self, root: str | os.PathLike, mode: str = "RGB") -> None:
        super().__init__(mode)
        self.root = Path(root)
        self.files = [str(f) for f in find_images(self.root)]

    def raw_len(self) -> int:
        return len(self.files)

    def read(self, i: int) -> str:
        return self.files[i]

    def name(self, i: int) -> str:
        return self.files[i]
