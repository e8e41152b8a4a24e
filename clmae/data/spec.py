"""Data specs: the one grammar of ``--data`` for ``clmae train``, ``clmae eval`` and ``clmae demo``.

* ``fmnist`` (or ``fashion-mnist``) -- Fashion-MNIST from Debian's ``/usr/share/datasets/fashion-mnist``;
  ``fmnist:FOLDER`` reads the four IDX files from FOLDER; ``fmnist-sample`` is the 1,000 + 1,000 image subset bundled
  with clmae.
* ``synthetic:N`` -- N smooth random images of the model's size (pretraining only: they have no labels).
* ``imagefolder:FOLDER`` or a bare ``FOLDER`` -- images on disk: ``FOLDER/CLASS/IMAGE`` for pretraining,
  ``FOLDER/train/CLASS/IMAGE`` and ``FOLDER/val/CLASS/IMAGE`` for evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .fashion_mnist import fmnist_root

SPECS = "fmnist, fmnist-sample, fmnist:FOLDER, synthetic:N, imagefolder:FOLDER or a FOLDER"


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec.

    Attributes:
        spec: the spec as given.
        kind: ``"fmnist"``, ``"synthetic"`` or ``"imagefolder"``.
        root: the folder to read (``None`` for synthetic data).
        count: the number of synthetic images (``None`` otherwise).
    """

    spec: str
    kind: str
    root: Path | None = None
    count: int | None = None


def parse_data_spec(spec: str) -> DataSpec:
    """Parse ``spec`` (see the module docstring); a ``ValueError`` naming the valid forms for a malformed one.

    Only the form is checked here; whether the files exist is checked by the reader.
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
    folder = spec.split(":", 1)[1] if spec.startswith("imagefolder:") else spec
    if not folder:
        raise ValueError(f"{spec!r} names no folder; write imagefolder:/path/to/images")
    return DataSpec(spec, "imagefolder", Path(folder).expanduser())
