"""Data specs: the one grammar of ``--data`` for ``clmae train``, ``clmae eval`` and ``clmae demo``.

* ``fmnist`` (or ``fashion-mnist``) -- Fashion-MNIST from Debian's ``/usr/share/datasets/fashion-mnist``;
  ``fmnist:FOLDER`` reads the four IDX files from FOLDER; ``fmnist-sample`` is the 1,000 + 1,000 image subset bundled
  with clmae.
* ``synthetic:N`` -- N smooth random images of the model's size (pretraining only: they have no labels).
* ``imagefolder:FOLDER`` or a bare ``FOLDER`` -- images on disk. Pretraining reads every image file under FOLDER, at
  any depth, class folders or not; evaluation reads ``FOLDER/train/CLASS/IMAGE`` and ``FOLDER/val/CLASS/IMAGE``.
* ``wds:SHARDS`` -- WebDataset tar shards (pretraining only): brace ranges or lists
  (``wds:/data/shard-{000000..000099}.tar``, ``wds:/data/{a,b}.tar``), a glob (``wds:/data/*.tar``) or a folder
  (``wds:/data/``: all its ``*.tar``, sorted).
* ``hfds:FOLDER`` or ``hfds:FOLDER#SPLIT`` -- a Hugging Face data set written by ``save_to_disk`` (pretraining only;
  a ``DatasetDict``'s ``train`` split unless ``#SPLIT`` names another). Needs ``pip install 'clmae[data]'``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .fashion_mnist import fmnist_root
from .webdataset import expand_braces

SPECS = (
    "fmnist, fmnist-sample, fmnist:FOLDER, synthetic:N, imagefolder:FOLDER or a FOLDER, wds:SHARDS "
    "(e.g. wds:/data/shard-{000000..000099}.tar), hfds:FOLDER[#SPLIT]"
)
LABELLED = ("fmnist", "imagefolder")


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec.

    Attributes:
        spec: the spec as given.
        kind: ``"fmnist"``, ``"synthetic"``, ``"imagefolder"``, ``"wds"`` or ``"hfds"``.
        root: the folder to read, or the shard pattern of ``wds`` (``None`` for synthetic data).
        count: the number of synthetic images (``None`` otherwise).
        split: the ``hfds`` split named after ``#`` (``None`` otherwise, or when not given).
    """

    spec: str
    kind: str
    root: Path | None = None
    count: int | None = None
    split: str | None = None

    @property
    def labelled(self) -> bool:
        """Whether the data has class labels (an evaluation needs them)."""
        return self.kind in LABELLED


def check_path(value: str | os.PathLike | None, what: str) -> Path:
    """``value`` as a ``Path``; a ``ValueError`` if it is empty (``--out ""``, an unset shell variable), which would
    otherwise mean the current folder."""
    if value is None or not str(os.fspath(value)).strip():
        raise ValueError(f"{what} is empty (an unset variable?); give a path")
    return Path(value)


def check_outside(out: str | os.PathLike, data: str | os.PathLike, what: str, data_what: str = "--data") -> None:
    """A ``ValueError`` if the output ``out`` is the folder that ``data`` (a data spec or a folder) reads, or inside
    it: what a run writes would be read back as data by the next one. Links are resolved before comparing."""
    folder = Path(data) if isinstance(data, os.PathLike) else None
    if folder is None:
        try:
            parsed = parse_data_spec(str(data))
        except ValueError:
            return  # the reader reports a bad spec
        if parsed.kind not in ("imagefolder", "hfds"):
            return  # fmnist reads four named files, wds named shards, synthetic nothing
        folder = parsed.root
    inside, where = Path(os.path.realpath(out)), Path(os.path.realpath(folder))
    if inside == where or where in inside.parents:
        relation = "is the data folder" if inside == where else f"is inside the data folder {folder}"
        raise ValueError(
            f"{what} {out} {relation} ({data_what} {data}): its outputs would be read back as input data; choose "
            f"an output outside {folder}"
        )


def parse_data_spec(spec: str) -> DataSpec:
    """Parse ``spec`` (see the module docstring); a ``ValueError`` naming the valid forms for a malformed one.

    Only the form is checked here (for ``wds:``, the braces too); whether the files exist is checked by the reader.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a data spec must be one of: {SPECS}; got {spec!r}")
    root = fmnist_root(spec)
    if root is not None:
        return DataSpec(spec, "fmnist", root)
    if spec.startswith("synthetic:"):
        try:
            count = int(spec.split(":", 1)[1])
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"synthetic data needs a positive count, e.g. synthetic:256, got {spec!r}")
        return DataSpec(spec, "synthetic", count=count)
    if spec.startswith("wds:"):
        pattern = spec[4:]
        if not pattern:
            raise ValueError(f"{spec!r} names no shards; write e.g. wds:/data/shard-{{000000..000099}}.tar")
        expand_braces(pattern)
        return DataSpec(spec, "wds", Path(pattern).expanduser())
    if spec.startswith("hfds:"):
        folder, sep, split = spec[5:].partition("#")
        if not folder or (sep and not split):
            raise ValueError(f"{spec!r}: write hfds:FOLDER or hfds:FOLDER#SPLIT (a folder save_to_disk wrote)")
        return DataSpec(spec, "hfds", Path(folder).expanduser(), split=split or None)
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):", spec)
    if scheme and scheme.group(1) != "imagefolder" and not Path(spec).expanduser().exists():
        raise ValueError(
            f"unknown data form {scheme.group(1)!r} in {spec!r}; use one of: {SPECS} (docs/data.md); a remote store "
            "must be mounted or copied to a local folder first"
        )
    folder = spec.split(":", 1)[1] if spec.startswith("imagefolder:") else spec
    if not folder:
        raise ValueError(f"{spec!r} names no folder; write imagefolder:/path/to/images")
    return DataSpec(spec, "imagefolder", Path(folder).expanduser())
