"""One reading of a weight spec for every entry point: :func:`clmae.load_pretrained`, ``clmae eval --model`` and
training's ``init=``.

A spec is a registry name or alias (``arch.tag``, ``vit_t_fmnist``), ``hf-hub:org/repo[@revision]``,
``local-dir:/path``, a weights folder (clmae's, timm's or a ``transformers`` ViTMAE folder), the ``model.safetensors``
or ``pretraining.safetensors`` file of a weights folder, and, where the caller accepts them, a bare ``.safetensors``
file (tensors without a ``config.json``) and the ``pretraining:`` prefix (the whole pretraining model).
:func:`parse_spec` turns it into a :class:`WeightSpec`; :func:`resolve` into the :class:`Source` its files come from.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .._files import CONFIG_NAME, PRETRAINING_NAME, WEIGHTS_NAME
from ..models import get_arch
from . import registry
from .download import check_repo_id, check_revision, check_sha256, fetch
from .registry import UnknownWeightError

PRETRAINING_PREFIX = "pretraining:"

TRAIN_COMMAND = "clmae train --recipe {recipe} --data DATA --out runs/{recipe}"
# Files that are torch pickles (training or foreign checkpoints), never a weights folder.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl", ".tar")
WHAT_LOADS = (
    "Weights load from a folder (config.json + model.safetensors, as clmae.save_pretrained writes it), its "
    "model.safetensors or pretraining.safetensors file, a registry name or alias (clmae.list_pretrained()), "
    "hf-hub:org/repo[@revision] or local-dir:/path; a transformers ViTMAE folder or repo loads too"
)


@dataclass
class Source:
    """Where a weight's files come from: a local folder, or a Hub repo at a revision with optional sha256s."""

    name: str
    folder: Path | None = None
    repo_id: str | None = None
    revision: str | None = None
    sha256: dict[str, str | None] = field(default_factory=dict)
    entry: registry.WeightEntry | None = None
    pinned: bool = False  # every file must have a registry sha256
    filename: str | None = None  # the weights file the spec named (FOLDER/pretraining.safetensors)

    def encoder_file(self) -> str:
        """The file that holds the encoder: the file the spec named, else ``model.safetensors``, or
        ``pretraining.safetensors`` where a weight has no separate encoder file (the bundled weights, and copies of
        their folders, store each tensor once, in the whole model's file)."""
        if self.filename is not None:
            return self.filename
        if self.pinned:  # the registry lists the files
            only_whole = WEIGHTS_NAME not in self.sha256 and PRETRAINING_NAME in self.sha256
            return PRETRAINING_NAME if only_whole else WEIGHTS_NAME
        folder = self.folder
        only_whole = (
            folder is not None and not (folder / WEIGHTS_NAME).is_file() and (folder / PRETRAINING_NAME).is_file()
        )
        return PRETRAINING_NAME if only_whole else WEIGHTS_NAME

    def verified(self, filename: str) -> bool:
        """Whether ``filename`` is checked against a registry sha256 (then its tensors need no further check)."""
        return bool(self.sha256.get(filename))

    def file(
        self,
        filename: str,
        cache_dir: str | Path | None,
        local_files_only: bool | None,
        needed: tuple[str, ...] = (),
    ) -> Path:
        """Local path of ``filename``, downloaded and verified if it comes from the Hub; ``needed`` names every file
        the caller will ask for (for the offline hint)."""
        if self.pinned and not self.sha256.get(filename):
            raise ValueError(
                f"the registry entry {self.entry.name if self.entry else self.name} lists no sha256 for {filename}, "
                "so it cannot be verified: that file is not part of the published weight"
            )
        if self.folder is not None:
            path = self.folder / filename
            if not path.is_file():
                if self.entry is not None:  # a bundled weight
                    raise FileNotFoundError(
                        f"{path} is missing: this install of clmae lacks a file of the bundled weight "
                        f"{self.entry.name}; reinstall clmae (pip install --force-reinstall clmae)"
                    )
                if filename == PRETRAINING_NAME:
                    raise FileNotFoundError(
                        f"{self.folder} has no {PRETRAINING_NAME}: it holds an encoder only ({WEIGHTS_NAME}); the "
                        "whole pretraining model (decoder, masking module) is saved by clmae.save_pretrained(CLMAE) "
                        "and clmae export; load the encoder with clmae.load_pretrained"
                    )
                hint = (
                    f"; its encoder is also in {PRETRAINING_NAME}: load {self.folder / PRETRAINING_NAME}"
                    if filename == WEIGHTS_NAME and (self.folder / PRETRAINING_NAME).is_file()
                    else ""
                )
                raise FileNotFoundError(
                    f"{self.folder} is not a weights folder: it has no {filename} (a weights folder holds "
                    f"{CONFIG_NAME} and {WEIGHTS_NAME}, as clmae.save_pretrained writes them){hint}"
                )
            expected = self.sha256.get(filename)
            if expected is not None:
                check_sha256(
                    path,
                    expected,
                    str(path),
                    f"The bundled file of {self.entry.name if self.entry else self.name} is damaged: reinstall clmae "
                    "(pip install --force-reinstall clmae).",
                )
            return path
        return fetch(
            self.repo_id,
            filename,
            revision=self.revision,
            sha256=self.sha256.get(filename),
            cache_dir=cache_dir,
            local_files_only=local_files_only,
            needed=needed,
        )


def _not_published(entry: registry.WeightEntry) -> ValueError:
    recipe = entry.recipe or "<recipe>"
    cmd = TRAIN_COMMAND.format(recipe=recipe)
    aliases = ", ".join(entry.aliases) or "-"
    return ValueError(
        f"{entry.name!r} (alias {aliases}) is not yet published: {entry.notes or 'no weights are released yet'} "
        f"Train it yourself with `{cmd}`, then load the weights folder it exports: "
        f"clmae.load_pretrained('runs/{recipe}/export'). Weights available now: {registry.describe_available()}"
    )


def _from_entry(entry: registry.WeightEntry, revision: str | None) -> Source:
    if entry.status == registry.NOT_PUBLISHED:
        raise _not_published(entry)
    if entry.status == registry.BUNDLED:
        if revision is not None:
            raise ValueError(
                f"{entry.name} ships inside the package and has no Hub revision; drop revision={revision!r}"
            )
        return Source(
            entry.name, folder=registry.bundled_folder(entry), sha256=dict(entry.files), entry=entry, pinned=True
        )
    rev = check_revision(revision, entry.name) or entry.revision
    if entry.status == registry.UNVERIFIED:
        warnings.warn(
            f"{entry.name} is not pinned: it loads {entry.hub_repo} at revision {rev!r} without sha256 verification "
            "(the registry has no commit id or checksum for it yet)",
            UserWarning,
            stacklevel=5,  # the caller of load_pretrained (through parse_spec and resolve)
        )
    elif revision is not None and revision != entry.revision:
        warnings.warn(
            f"{entry.name}: revision {revision!r} differs from the registry's pinned {entry.revision}; its files "
            "are not verified against the registry's sha256",
            UserWarning,
            stacklevel=5,  # the caller of load_pretrained (through parse_spec and resolve)
        )
    pinned = entry.status == registry.PUBLISHED and rev == entry.revision
    shas = entry.files if pinned else {}
    return Source(entry.name, repo_id=entry.hub_repo, revision=rev, sha256=dict(shas), entry=entry, pinned=pinned)


def resolve(name_or_path: str | os.PathLike, revision: str | None = None) -> Source:
    """Turn a name into a :class:`Source`.

    Accepted: a folder path, or its ``model.safetensors`` / ``pretraining.safetensors`` file (then
    :attr:`Source.filename`); ``local-dir:/path``; ``hf-hub:org/repo[@revision]``; a registry name (``arch.tag``),
    alias (``vit_b``) or an architecture with a single registry entry. Entry points read specs with
    :func:`parse_spec`, which adds the ``pretraining:`` prefix and bare files where they are taken.
    """
    if isinstance(name_or_path, os.PathLike):
        name_or_path = os.fspath(name_or_path)
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"expected a weight name, hf-hub:org/repo or a folder, got {name_or_path!r}")
    name = name_or_path
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:") :]).expanduser()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder (from {name!r})")
        return Source(name, folder=folder)
    if name.startswith("hf-hub:"):
        repo, at, rev = name[len("hf-hub:") :].partition("@")
        if repo.count("/") != 1 or not all(repo.split("/")):
            raise ValueError(f"{name!r}: expected hf-hub:org/repo or hf-hub:org/repo@revision")
        check_repo_id(repo, name)  # before any request: a bad name is refused at once, not retried
        check_revision(rev if at else None, name)
        check_revision(revision, name)
        if rev and revision and rev != revision:
            raise ValueError(f"{name!r} names revision {rev!r} but revision={revision!r} was passed; give one")
        rev = rev or revision
        pinned = next((e for e in registry.entries() if e.hub_repo == repo and e.status == registry.PUBLISHED), None)
        verified = pinned is not None and rev == pinned.revision
        if pinned is not None and not verified:
            warnings.warn(
                f"{name!r}: the registry pins {repo} at {pinned.revision}, this loads {rev or 'main'}, so no sha256 "
                f"is checked; use {pinned.name!r} or hf-hub:{repo}@{pinned.revision} for the verified weights",
                UserWarning,
                stacklevel=4,  # the caller of load_pretrained (through parse_spec)
            )
        shas = dict(pinned.files) if verified else {}
        return Source(name, repo_id=repo, revision=rev, sha256=shas, entry=pinned, pinned=verified)
    folder = Path(name).expanduser()
    if folder.suffix.lower() in (*CHECKPOINT_SUFFIXES, ".safetensors"):  # a file, never a registry name
        return _from_file(name, folder)
    if "/" in name or os.sep in name or name.startswith((".", "~")):  # a path, never a registry name
        if folder.is_dir():
            return Source(name, folder=folder)
        if folder.is_file():
            raise ValueError(f"{name} is a file, not a weights folder. {WHAT_LOADS}")
        hint = (
            f" For a Hub repository write hf-hub:{name}." if name.count("/") == 1 and not folder.parent.is_dir() else ""
        )
        raise FileNotFoundError(f"{name} is not a folder.{hint} {WHAT_LOADS}")
    entry = registry.find(name)
    if entry is not None:
        return _from_entry(entry, revision)
    if folder.is_dir():  # a bare folder name in the working directory
        return Source(name, folder=folder)
    raise UnknownWeightError(
        f"unknown pretrained weight {name!r}.{registry.suggest(name)} Give a registry name or alias, "
        f"hf-hub:org/repo[@revision], local-dir:/path or a folder. Registry (clmae.list_pretrained()): "
        + "; ".join(f"{e.name}: {e.status}" for e in registry.entries())
    )


def _from_file(name: str, path: Path) -> Source:
    """A file given where weights are expected: the ``.safetensors`` file of a weights folder loads as its folder;
    a torch checkpoint gets an error that names the commands that turn it into weights."""
    if path.suffix.lower() != ".safetensors":
        convert = (
            f"{name} is a torch checkpoint, not weights: a reference CL-MAE/MAE or fine-tuned checkpoint becomes a "
            f"weights folder with `clmae convert {name} OUT`, a clmae training checkpoint with `clmae export {name} "
            f"OUT`; then load OUT. {WHAT_LOADS}"
        )
        if not path.is_file():
            raise FileNotFoundError(f"no such file {name}. {convert}")
        raise ValueError(convert)
    if not path.is_file():
        raise FileNotFoundError(f"no such file {name}. {WHAT_LOADS}")
    if path.name in (WEIGHTS_NAME, PRETRAINING_NAME) and (path.parent / CONFIG_NAME).is_file():
        return Source(name, folder=path.parent, filename=path.name)
    raise ValueError(
        f"{name} is a bare weights file: its architecture comes from the {CONFIG_NAME} of a weights folder, where it "
        f"is {WEIGHTS_NAME} (clmae.save_pretrained writes both). Load that folder, or evaluate the file with "
        f"`clmae eval knn --model {name} arch=NAME --data DATA`. {WHAT_LOADS}"
    )


def _nor_an_architecture(name: str, weights_error: UnknownWeightError) -> UnknownWeightError:
    """The error for a name that is no weight, naming the close architectures as well as the close weights."""
    try:
        get_arch(name)  # raises with close architecture names
    except ValueError as arch_error:
        return UnknownWeightError(f"{arch_error} Nor is it a weight: {weights_error}")
    return weights_error


def resolve_weight_or_explain(name: str, revision: str | None = None) -> Source:
    """:func:`resolve` for a name that is not an architecture; if it is no weight either, the ``ValueError`` names
    the close architectures as well as the close weights."""
    try:
        return resolve(name, revision)
    except UnknownWeightError as weights_error:  # only an unknown name: any other error (a checksum...) stands as is
        raise _nor_an_architecture(name, weights_error) from None


@dataclass(frozen=True)
class WeightSpec:
    """A weight spec as every entry point reads it (:func:`parse_spec`).

    Attributes:
        spec: as given.
        name: the spec without the ``pretraining:`` prefix.
        whole: the spec names the whole pretraining model (encoder, decoder, masking module): the ``pretraining:``
            prefix, or the ``pretraining.safetensors`` file of a weights folder.
        source: where the weight's files come from; ``None`` for a bare file.
        file: a bare ``.safetensors`` file (tensors without a ``config.json``): the caller supplies the architecture.
    """

    spec: str
    name: str
    whole: bool = False
    source: Source | None = None
    file: Path | None = None


def _bare_file(name: str) -> Path | None:
    """``name`` as a path if it is a ``.safetensors`` file that is not the weights file of a folder."""
    path = Path(name).expanduser()
    if path.suffix.lower() != ".safetensors" or not path.is_file():
        return None
    folder_file = path.name in (WEIGHTS_NAME, PRETRAINING_NAME) and (path.parent / CONFIG_NAME).is_file()
    return None if folder_file else path


def parse_spec(
    spec: str | os.PathLike,
    revision: str | None = None,
    *,
    prefix: bool = False,
    bare: bool = False,
    architectures: bool = False,
) -> WeightSpec:
    """Read a weight spec: the one set of rules of :func:`clmae.load_pretrained`, ``clmae eval --model`` and
    ``init=``.

    Args:
        spec: a registry name or alias, ``hf-hub:org/repo[@revision]``, ``local-dir:/path``, a weights folder or
            its ``.safetensors`` file (see :func:`resolve`).
        revision: Hub revision.
        prefix: the caller takes ``pretraining:SPEC`` (the whole pretraining model); otherwise it is refused.
        bare: the caller takes a bare ``.safetensors`` file and supplies its architecture; otherwise it is refused
            with the ways to load it.
        architectures: the caller takes architecture names too: an unknown name's error names the close
            architectures as well as the close weights.

    Returns:
        The :class:`WeightSpec`.
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    name, whole = spec, False
    if isinstance(spec, str) and spec.startswith(PRETRAINING_PREFIX):
        name, whole = spec[len(PRETRAINING_PREFIX) :], True
        if not prefix:
            raise ValueError(
                f"{spec!r}: the {PRETRAINING_PREFIX!r} prefix names a whole pretraining model, as init= takes it; "
                f"load that with clmae.load_pretraining_model({name!r}), its encoder with {name!r}"
            )
    if bare and isinstance(name, str) and (path := _bare_file(name)) is not None:
        return WeightSpec(spec, name, whole, file=path)
    source = resolve_weight_or_explain(name, revision) if architectures else resolve(name, revision)
    return WeightSpec(spec, name, whole or source.filename == PRETRAINING_NAME, source)
