"""Local Hugging Face datasets (written by ``save_to_disk``), read map-style from their memory-mapped Arrow files.

Needs the optional ``datasets`` package (``pip install 'clmae[data]'``), imported only when such data is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .._parse import read_json
from .images import ImageSource

IMAGE_COLUMNS = ("image", "img")


# The JSON files save_to_disk writes (top level, and per split of a DatasetDict), each a JSON object.
_SAVED_METADATA = ("dataset_info.json", "state.json", "dataset_dict.json")


def check_saved_metadata(root: Path) -> None:
    """A ``ValueError`` naming the file (and the field) when a metadata file of a saved data set is not the JSON
    object ``datasets`` expects, read with bounds, before ``datasets.load_from_disk`` fails in its own way."""
    for path in [root / n for n in _SAVED_METADATA] + [
        p / n for p in sorted(root.iterdir()) if p.is_dir() for n in _SAVED_METADATA
    ]:
        if not path.is_file():
            continue
        value = read_json(path, "hfds: metadata file")
        if not isinstance(value, dict):
            raise ValueError(
                f"hfds: metadata file {path} must hold a JSON object, got a {type(value).__name__}; save the data "
                "set again with save_to_disk"
            )
        for field, kind in (("splits", (list, dict)), ("features", dict), ("_data_files", list)):
            if field in value and value[field] is not None and not isinstance(value[field], kind):
                raise ValueError(
                    f"hfds: metadata file {path}: field {field} has the wrong type ({type(value[field]).__name__}); "
                    "save the data set again with save_to_disk"
                )


class MissingPackageError(ImportError, ValueError):
    """An optional package is not installed (an ``ImportError``, and a ``ValueError`` for the command line)."""


def import_datasets() -> Any:
    """The ``datasets`` module, or a :class:`MissingPackageError` saying how to install it."""
    try:
        import datasets
    except ImportError:
        raise MissingPackageError(
            "reading hfds: data needs the `datasets` package: pip install 'clmae[data]'"
        ) from None
    return datasets


def image_column(features: dict[str, Any]) -> str:
    """The image column of a data set: the first ``datasets.Image`` feature, else a column named image or img."""
    datasets = import_datasets()
    for name, feature in features.items():
        if isinstance(feature, datasets.Image):
            return name
    for name in IMAGE_COLUMNS:
        if name in features:
            return name
    raise ValueError(
        f"no image column among {', '.join(features) or 'no columns'}; store the images in a column of type "
        "datasets.Image() or name it 'image'"
    )


class HFDatasetImages(ImageSource):
    """The images of a ``datasets`` data set saved with ``save_to_disk`` (a ``Dataset`` or a ``DatasetDict``).

    The image column's feature is switched to ``Image(decode=False)`` so that clmae decodes the bytes itself (errors
    name the row; ``drop_unreadable`` works as for files). Columns named ``image``/``img`` that are not an ``Image``
    feature may hold encoded bytes, file paths, ``{"bytes", "path"}`` dicts or uint8 arrays.

    Args:
        root: the folder ``save_to_disk`` wrote.
        split: the split of a ``DatasetDict`` (default ``"train"``); must be ``None`` for a ``Dataset``.
        mode: PIL mode of the images served (``"RGB"`` or ``"L"``).
    """

    def __init__(self, root: str | os.PathLike, split: str | None = None, mode: str = "RGB") -> None:
        super().__init__(mode)
        datasets = import_datasets()
        self.root, self.split = Path(root), split
        if not self.root.exists():
            raise FileNotFoundError(f"hfds: folder {self.root} does not exist; give the folder save_to_disk wrote")
        if not self.root.is_dir():
            raise ValueError(f"hfds: {self.root} is a file, not a folder; give the folder save_to_disk wrote")
        check_saved_metadata(self.root)
        try:
            ds = datasets.load_from_disk(str(self.root))
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{self.root} is not a saved Hugging Face data set (no dataset_info.json / dataset_dict.json); "
                "write it with Dataset.save_to_disk or DatasetDict.save_to_disk"
            ) from None
        except (ValueError, KeyError, TypeError, AttributeError, OSError) as e:  # damaged metadata or Arrow files
            raise ValueError(
                f"hfds: {self.root} cannot be read as a saved Hugging Face data set ({type(e).__name__}: "
                f"{' '.join(str(e).split())[:200]}); save it again with save_to_disk"
            ) from None
        if isinstance(ds, datasets.DatasetDict):
            self.split = split or "train"
            if self.split not in ds:
                raise ValueError(
                    f"{self.root} has no split {self.split!r}; its splits are {', '.join(ds)}: write "
                    f"hfds:{self.root}#SPLIT"
                )
            ds = ds[self.split]
        elif split is not None:
            raise ValueError(f"{self.root} holds one Dataset, not a DatasetDict with splits; drop #{split}")
        self.column = image_column(ds.features)
        ds = ds.select_columns([self.column])
        if isinstance(ds.features[self.column], datasets.Image):
            ds = ds.cast_column(self.column, datasets.Image(decode=False))
        if len(ds) == 0:
            raise FileNotFoundError(f"no images found in {self.root}" + (f" split {self.split}" if self.split else ""))
        self.ds = ds

    def raw_len(self) -> int:
        return len(self.ds)

    def read(self, i: int) -> bytes | str | Image.Image:
        item = self.ds[i][self.column]
        if isinstance(item, dict):
            item = item.get("bytes") or item.get("path")
        if isinstance(item, (bytes, str, Image.Image)):
            return item
        if item is None:
            raise ValueError("the row holds no image")
        array = np.asarray(item)  # datasets returns arrays as nested lists: integers come back as int64
        if array.dtype.kind in "iu" and array.size and array.min() >= 0 and array.max() <= 255:
            array = array.astype(np.uint8)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ValueError(
                f"the row holds a {array.dtype} array of shape {array.shape}, not uint8 [H, W(, C)] pixels"
            )
        return Image.fromarray(array)

    def name(self, i: int) -> str:
        split = f" split {self.split}" if self.split else ""
        return f"row {i} of {self.root}{split} (column {self.column})"
