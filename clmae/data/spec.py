"""Data specs: the one grammar of ``--data`` for ``clmae train``, ``clmae eval`` and ``clmae demo``, and the table
of data forms (:data:`FORMS`) that the grammar, the commands' help, :func:`check_outside`, pretraining and
evaluation read.

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

A new form is a reader module plus one :func:`register_data_form` call (or one entry below). This module imports
neither torch nor the readers: a form names its readers as ``"module:function"`` strings, imported when first used,
so that ``clmae --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataSpec:
    """A parsed data spec.

    Attributes:
        spec: the spec as given.
        kind: the form's name in :data:`FORMS`: ``"fmnist"``, ``"synthetic"``, ``"imagefolder"``, ``"wds"``,
            ``"hfds"`` or a registered one.
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
        form = FORMS.get(self.kind)
        return form is not None and form.labelled


@dataclass(frozen=True)
class DataForm:
    """One form of data spec: how it is written, parsed and read.

    Attributes:
        kind: the name :attr:`DataSpec.kind` carries.
        syntax: how the form is written, for help and errors (``"wds:SHARDS"``).
        help: one line on what it reads, for the commands' help.
        parse: ``spec -> DataSpec``, or ``None`` when ``spec`` is not of this form; a ``ValueError`` for a spec of
            this form that is malformed. Checks the form only, not whether files exist.
        reader: pretraining's reader of image files, ``(DataSpec) -> (ImageSource, description)``, as a callable or
            a ``"module:function"`` string imported when first used; ``None`` for the forms pretraining holds whole
            in one tensor (Fashion-MNIST, synthetic).
        eval_reader: evaluation's reader, ``(spec, DataSpec) -> EvalData`` (:mod:`clmae.eval.data`), likewise; ``None``
            for data without labels.
        folder: the spec names a folder that is read whole, so an output inside it would be read back as data
            (:func:`check_outside`).
    """

    kind: str
    syntax: str
    help: str
    parse: Callable[[str], DataSpec | None]
    reader: str | Callable[..., Any] | None = None
    eval_reader: str | Callable[..., Any] | None = None
    folder: bool = False

    @property
    def labelled(self) -> bool:
        """Whether evaluation can read it (it has class labels)."""
        return self.eval_reader is not None


def load_ref(ref: str | Callable[..., Any]) -> Callable[..., Any]:
    """A callable given as itself or as a ``"module:name"`` string (imported now)."""
    if callable(ref):
        return ref
    module, sep, name = ref.partition(":")
    if not sep or not name:
        raise ValueError(f"{ref!r} is not a 'module:name' reference")
    return getattr(importlib.import_module(module), name)


def add_entry(table: dict[str, Any], name: str, entry: Any, what: str) -> Any:
    """Add ``entry`` to the registry ``table`` under ``name`` (a ``ValueError`` naming ``what`` if the name is taken);
    returns it. The one rule of clmae's registries: data forms here, evaluation protocols in ``clmae.eval``."""
    if name in table:
        raise ValueError(f"{what} {name!r} is already registered")
    table[name] = entry
    return entry


def _parse_fmnist(spec: str) -> DataSpec | None:
    from .fashion_mnist import fmnist_root  # imports torch: only once a spec is parsed, never for --help

    root = fmnist_root(spec)
    return None if root is None else DataSpec(spec, "fmnist", root)


def _parse_synthetic(spec: str) -> DataSpec | None:
    if not spec.startswith("synthetic:"):
        return None
    try:
        count = int(spec.split(":", 1)[1])
    except ValueError:
        count = 0
    if count < 1:
        raise ValueError(f"synthetic data needs a positive count, e.g. synthetic:256, got {spec!r}")
    return DataSpec(spec, "synthetic", count=count)


def _parse_imagefolder(spec: str) -> DataSpec | None:
    if not spec.startswith("imagefolder:"):
        return None  # a bare FOLDER is the grammar's last resort, in parse_data_spec
    folder = spec.split(":", 1)[1]
    if not folder:
        raise ValueError(f"{spec!r} names no folder; write imagefolder:/path/to/images")
    return DataSpec(spec, "imagefolder", Path(folder).expanduser())


def _parse_wds(spec: str) -> DataSpec | None:
    if not spec.startswith("wds:"):
        return None
    pattern = spec[4:]
    if not pattern:
        raise ValueError(f"{spec!r} names no shards; write e.g. wds:/data/shard-{{000000..000099}}.tar")
    from .webdataset import expand_braces  # numpy: only once a spec is parsed

    expand_braces(pattern)
    return DataSpec(spec, "wds", Path(pattern).expanduser())


def _parse_hfds(spec: str) -> DataSpec | None:
    if not spec.startswith("hfds:"):
        return None
    folder, sep, split = spec[5:].partition("#")
    if not folder or (sep and not split):
        raise ValueError(f"{spec!r}: write hfds:FOLDER or hfds:FOLDER#SPLIT (a folder save_to_disk wrote)")
    return DataSpec(spec, "hfds", Path(folder).expanduser(), split=split or None)


FORMS: dict[str, DataForm] = {}
"""Every data form by kind, in the order the grammar tries them and the help lists them."""


def register_data_form(form: DataForm) -> DataForm:
    """Add ``form`` to :data:`FORMS` (a ``ValueError`` if its kind is taken); returns it."""
    return add_entry(FORMS, form.kind, form, "a data form")


def unregister_data_form(kind: str) -> None:
    """Remove the form ``kind`` from :data:`FORMS`."""
    FORMS.pop(kind)


for _form in (
    DataForm(
        "fmnist",
        "fmnist, fmnist-sample, fmnist:FOLDER",
        "Fashion-MNIST: Debian's, the bundled 1,000 + 1,000 images, or the IDX files in FOLDER",
        _parse_fmnist,
        eval_reader="clmae.eval.data:read_fmnist",
    ),
    DataForm("synthetic", "synthetic:N", "N smooth random images (pretraining only)", _parse_synthetic),
    DataForm(
        "imagefolder",
        "imagefolder:FOLDER or a FOLDER",
        "images at any depth; evaluation reads FOLDER/train/CLASS/* and FOLDER/val/CLASS/*",
        _parse_imagefolder,
        reader="clmae.data.pretraining:folder_source",
        eval_reader="clmae.eval.data:read_imagefolder",
        folder=True,
    ),
    DataForm(
        "wds",
        "wds:SHARDS",
        "WebDataset tar shards, e.g. wds:/data/shard-{000000..000099}.tar (pretraining only)",
        _parse_wds,
        reader="clmae.data.pretraining:wds_source",
    ),
    DataForm(
        "hfds",
        "hfds:FOLDER[#SPLIT]",
        "a Hugging Face data set written by save_to_disk (pretraining only)",
        _parse_hfds,
        reader="clmae.data.pretraining:hfds_source",
        folder=True,
    ),
):
    register_data_form(_form)


def specs(labelled: bool = False) -> str:
    """The forms' syntax in one line (``labelled``: only those evaluation reads), for error messages."""
    return ", ".join(f.syntax for f in FORMS.values() if f.labelled or not labelled)


def forms_help(labelled: bool = False) -> str:
    """Every form with its line of help (``labelled``: only those evaluation reads), for the commands' help."""
    return "; ".join(f"{f.syntax} ({f.help})" for f in FORMS.values() if f.labelled or not labelled)


def __getattr__(name: str) -> Any:
    # SPECS and LABELLED are read from the table each time, so a registered form is in them
    if name == "SPECS":
        return specs()
    if name == "LABELLED":
        return tuple(kind for kind, form in FORMS.items() if form.labelled)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
        if not FORMS[parsed.kind].folder:
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

    The forms of :data:`FORMS` are tried in order; a spec none of them takes is a folder of images if it has no
    ``scheme:`` or names a path that exists. Only the form is checked here (for ``wds:``, the braces too); whether
    the files exist is checked by the reader.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"a data spec must be one of: {specs()}; got {spec!r}")
    for form in FORMS.values():
        parsed = form.parse(spec)
        if parsed is not None:
            return parsed
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):", spec)
    if scheme and not Path(spec).expanduser().exists():
        raise ValueError(
            f"unknown data form {scheme.group(1)!r} in {spec!r}; use one of: {specs()} (docs/data.md); a remote "
            "store must be mounted or copied to a local folder first"
        )
    return DataSpec(spec, "imagefolder", Path(spec).expanduser())
