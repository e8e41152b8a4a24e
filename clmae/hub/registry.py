"""The weights registry: ``clmae/hub/manifest.json``, one reviewed list of every published (or planned) weight."""

from __future__ import annotations

import difflib
import fnmatch
import json
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .._parse import read_json

PUBLISHED = "published"
BUNDLED = "bundled"
UNVERIFIED = "unverified"
NOT_PUBLISHED = "not yet published"
STATUSES = (PUBLISHED, BUNDLED, UNVERIFIED, NOT_PUBLISHED)

# The one reviewed manifest ships inside the package; CLMAE_WEIGHTS_MANIFEST points at another file, e.g. a private
# registry.
MANIFEST = Path(__file__).resolve().parent / "manifest.json"
# Weights with status "bundled" ship inside the package, one folder per entry.
BUNDLED_ROOT = Path(__file__).resolve().parent / "bundled"


_SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class UnknownWeightError(ValueError):
    """A name that is no registry weight, alias or path; the message names the closest ones."""


@dataclass(frozen=True)
class WeightEntry:
    """One registry entry.

    Attributes:
        name: ``arch.tag``, e.g. ``vit_base_patch16_224.mae``.
        aliases: short names, e.g. ``("vit_b", "clmae_vit_b")``; a CL-MAE weight is ``clmae_*`` (and, as the
            package's own method, also without the prefix), an MAE weight ``mae_*``.
        method: ``"clmae"`` or ``"mae"``: what trained it.
        arch: the clmae architecture (:func:`clmae.list_models`).
        hub_repo: Hugging Face Hub repository id, ``None`` until published.
        revision: pinned commit id (``"main"`` for unverified entries).
        files: ``{file name: sha256 or None}``.
        license: SPDX-style licence id of the weights.
        dataset: pretraining data.
        metrics: measured results ``{name: value}``.
        status: ``"published"`` (on the Hub, pinned), ``"bundled"`` (ships inside the package, every file with a
            sha256), ``"unverified"`` or ``"not yet published"``.
        recipe: the ``clmae train --recipe`` that produces it.
        source: provenance in one line.
        notes: anything a user should know.
    """

    name: str
    aliases: tuple[str, ...]
    method: str
    arch: str
    hub_repo: str | None
    revision: str | None
    files: dict[str, str | None] = field(default_factory=dict)
    license: str | None = None
    dataset: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    status: str = NOT_PUBLISHED
    recipe: str | None = None
    source: str = ""
    notes: str = ""

    @property
    def alias(self) -> str | None:
        """The first (shortest) alias, or ``None``."""
        return self.aliases[0] if self.aliases else None

    @property
    def tag(self) -> str:
        """The part after the dot of ``name``."""
        return self.name.partition(".")[2]

    @property
    def pinned(self) -> bool:
        """True when the revision is a commit id and every file has a sha256."""
        rev = self.revision or ""
        return (
            len(rev) == 40
            and all(c in "0123456789abcdef" for c in rev)
            and bool(self.files)
            and all(self.files.values())
        )


def bundled_folder(entry: WeightEntry) -> Path:
    """Where the package keeps a ``"bundled"`` entry's files; a ``ValueError`` for a name that would lead outside
    ``BUNDLED_ROOT`` (names are checked when the manifest is read; this holds for entries built by hand too)."""
    folder = BUNDLED_ROOT / entry.name
    if os.path.realpath(folder).startswith(os.path.realpath(BUNDLED_ROOT) + os.sep) and ".." not in entry.name:
        return folder
    raise ValueError(f"weight name {entry.name!r} points outside the package's weights folder {BUNDLED_ROOT}")


def manifest_path() -> Path:
    """The manifest in use: ``$CLMAE_WEIGHTS_MANIFEST``, else the package's ``clmae/hub/manifest.json``."""
    env = os.environ.get("CLMAE_WEIGHTS_MANIFEST")
    return Path(env) if env else MANIFEST


# Fields of an entry and the JSON types they take (None allowed where the field may be unset).
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "aliases": (list, type(None)),
    "alias": (str, type(None)),
    "method": (str,),
    "arch": (str,),
    "hub_repo": (str, type(None)),
    "revision": (str, type(None)),
    "files": (dict,),
    "license": (str, type(None)),
    "dataset": (str, type(None)),
    "metrics": (dict, type(None)),
    "status": (str,),
    "recipe": (str, type(None)),
    "source": (str, type(None)),
    "notes": (str, type(None)),
}


def _validate(raw: dict[str, Any], path: Path) -> WeightEntry:
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: each entry of field 'weights' must be a JSON object, got {json.dumps(raw)[:60]}")
    name = raw.get("name", "?")
    for key, types in _FIELD_TYPES.items():
        if key in raw and not isinstance(raw[key], types):
            expected = " or ".join(
                "null" if t is type(None) else {dict: "an object", list: "a list"}.get(t, "a string") for t in types
            )
            raise ValueError(
                f"{path}: entry {name!r}: field {key!r} must be {expected}, got {json.dumps(raw[key])[:60]}; "
                "see weights/README.md for the fields"
            )
    raw = dict(raw)
    if "alias" in raw:  # format 1: one alias
        alias = raw.pop("alias")
        raw.setdefault("aliases", [alias] if alias else [])
    raw["aliases"] = tuple(raw.get("aliases") or ())
    try:
        entry = WeightEntry(**raw)
    except TypeError as e:
        raise ValueError(f"{path}: entry {name!r} is malformed ({e}); see weights/README.md for the fields") from None
    if entry.status not in STATUSES:
        raise ValueError(f"{path}: entry {name!r} has status {entry.status!r}, expected one of {STATUSES}")
    if "." not in entry.name:
        raise ValueError(f"{path}: entry name {name!r} must be 'arch.tag'")
    for what, value in [
        ("name", entry.name),
        *(("alias", a) for a in entry.aliases),
        *(("file", f) for f in entry.files),
    ]:
        if not isinstance(value, str) or not _SAFE_NAME.match(value) or ".." in value:
            raise ValueError(
                f"{path}: entry {name!r} has the {what} {value!r}: names may hold letters, digits and . _ - only (no "
                "'/' or '..'), so that they can never point outside the package's weights folder"
            )
    if entry.status == PUBLISHED and not (entry.hub_repo and entry.pinned):
        raise ValueError(
            f"{path}: entry {name!r} is 'published' but is not pinned: it needs hub_repo, a 40-hex commit id as "
            "revision and a sha256 for every file"
        )
    if entry.status == BUNDLED and not (entry.files and all(entry.files.values())):
        raise ValueError(f"{path}: entry {name!r} is 'bundled' but not every file has a sha256")
    if entry.status == PUBLISHED and not {"config.json", "model.safetensors"} <= set(entry.files):
        raise ValueError(f"{path}: entry {name!r} must list config.json and model.safetensors with their sha256")
    if entry.status == BUNDLED and not (
        "config.json" in entry.files and {"model.safetensors", "pretraining.safetensors"} & set(entry.files)
    ):
        raise ValueError(
            f"{path}: entry {name!r} must list config.json and model.safetensors or pretraining.safetensors "
            "(whose encoder.* tensors are then the encoder) with their sha256"
        )
    if entry.status == UNVERIFIED and not entry.hub_repo:
        raise ValueError(f"{path}: entry {name!r} is 'unverified' but has no hub_repo")
    return entry


@lru_cache(maxsize=4)
def _load(path: Path) -> tuple[WeightEntry, ...]:
    try:
        data = read_json(path, "weights manifest")
    except FileNotFoundError as e:
        raise FileNotFoundError(
            f"weights manifest {path} not found; set CLMAE_WEIGHTS_MANIFEST or reinstall clmae"
        ) from e
    if not isinstance(data, dict) or not isinstance(data.get("weights", []), list):
        got = type(data["weights"] if isinstance(data, dict) else data).__name__
        raise ValueError(
            f"weights manifest {path}: field 'weights' must be a list of entries in a JSON object, got a {got}"
        )
    entries = tuple(_validate(raw, path) for raw in data.get("weights", []))
    names = [e.name for e in entries] + [a for e in entries for a in e.aliases]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"weights manifest {path}: names/aliases used twice: {sorted(dup)}")
    return entries


def entries() -> tuple[WeightEntry, ...]:
    """Every registry entry, in manifest order."""
    return _load(manifest_path())


def list_pretrained(filter: str = "*", *, status: str | None = None) -> list[str]:
    """Names (``arch.tag``) of the registry's weights whose full name matches a shell-style ``filter``, as timm's
    ``list_pretrained`` and a shell's glob match them; the details of each are :func:`get_weight`'s.

    A pattern matches names only (``"mae_*"`` matches nothing, since every name starts with its architecture), so
    ``"*.mae*"`` is the MAE weights and ``"*mae*"`` every weight (``clmae`` contains ``mae``, as in a shell). A
    filter with no wildcard may also be an alias: ``"vit_b"`` gives the weight it names.

    Args:
        filter: e.g. ``"*.mae*"`` or ``"vit_base*"``.
        status: only this status (``"published"``, ``"bundled"``, ``"unverified"``, ``"not yet published"``).

    Returns:
        Sorted names.
    """
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    # Aliases take part only as exact names: globbing them too made "*mae*"-style patterns match weights by a
    # nickname the printed list does not show.
    exact = not any(c in filter for c in "*?[")
    return sorted(
        e.name
        for e in entries()
        if (fnmatch.fnmatchcase(e.name, filter) or (exact and filter in e.aliases)) and status in (None, e.status)
    )


def get_weight(name: str) -> WeightEntry:
    """The registry entry called ``name`` (``arch.tag`` or an alias): status, method, files, licence, metrics.

    Raises:
        ValueError: no such entry (with close names), or a bare architecture with several weights.
    """
    entry = find(name)
    if entry is None:
        raise UnknownWeightError(
            f"unknown pretrained weight {name!r}.{suggest(name)} Names: {', '.join(list_pretrained())}"
        )
    return entry


def describe_available() -> str:
    """The loadable entries (bundled, published or unverified) on one line, ``"; "``-separated, for error messages."""
    items = [
        e.name + (f" (alias {', '.join(e.aliases)})" if e.aliases else "") + f": {e.method}, {e.status}"
        for e in entries()
        if e.status != NOT_PUBLISHED
    ]
    return "; ".join(items) if items else "(none)"


def find(name: str) -> WeightEntry | None:
    """The entry called ``name`` (full name or alias), or ``None``.

    A bare architecture name (``vit_base_patch16_224``) resolves only when the registry has exactly one entry for it;
    otherwise a ``ValueError`` lists the ``arch.tag`` names to choose from.
    """
    for e in entries():
        if name == e.name or name in e.aliases:
            return e
    same_arch = [e for e in entries() if e.arch == name]
    if len(same_arch) == 1:
        return same_arch[0]
    if len(same_arch) > 1:
        options = ", ".join(f"{e.name} ({e.method}, {e.status})" for e in same_arch)
        raise ValueError(f"{name!r} has several pretrained weights; name one of: {options}")
    return None


def suggest(name: str) -> str:
    """A "Did you mean" hint for an unknown name."""
    known = [n for e in entries() for n in (e.name, *e.aliases)]
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    return f" Did you mean: {', '.join(close)}?" if close else ""
