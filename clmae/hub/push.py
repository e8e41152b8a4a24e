"""``push_to_hub``: upload a weights folder with ``huggingface_hub`` and print what the registry needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from .._atomic import write_text
from .._config_json import read_config
from .._files import CARD_NAME, CONFIG_NAME, PRETRAINING_NAME, WEIGHTS_NAME, sha256_file
from .._version import __version__
from .load import read_weights


def manifest_entry(folder: str | Path, repo_id: str, commit: str) -> dict[str, Any]:
    """The ``clmae/hub/manifest.json`` entry for ``folder`` published as ``repo_id`` at ``commit``.

    ``aliases`` and ``recipe`` are left for the reviewer to fill in (a CL-MAE weight's aliases start with
    ``clmae_``, an MAE weight's with ``mae_``).
    """
    folder = Path(folder)
    cfg = read_config(folder)
    info = cfg.get("clmae") or {}
    arch = info.get("arch") or cfg["architecture"]
    repo_name = repo_id.split("/")[-1]
    files = [f for f in (CONFIG_NAME, WEIGHTS_NAME, PRETRAINING_NAME) if (folder / f).is_file()]
    return {
        "name": repo_name if repo_name.startswith(arch + ".") else f"{arch}.{repo_name}",
        "aliases": [],
        "method": info.get("method"),
        "arch": arch,
        "hub_repo": repo_id,
        "revision": commit,
        "files": {f: sha256_file(folder / f) for f in files},
        "license": cfg["pretrained_cfg"].get("license"),
        "dataset": ", ".join(info.get("datasets") or []) or None,
        "metrics": info.get("metrics") or {},
        "status": "published",
        "recipe": None,
        "source": "",
        "notes": "",
    }


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
    create_repo: bool = True,
) -> dict[str, Any]:
    """Upload a folder written by :func:`clmae.save_pretrained` to the Hub, then print the commit id, the files'
    sha256 lines and the registry entry that pins them.

    Args:
        folder: the weights folder.
        repo_id: ``org/name`` on the Hub.
        revision: branch to commit to (default ``main``).
        private: create the repository private.
        token: Hub token (default: the logged-in one, ``hf auth login``).
        commit_message: default "Upload <arch> weights with clmae".
        create_repo: create the repository if it does not exist.

    Returns:
        The registry entry (also printed), with ``revision`` = the new commit id.
    """

    folder = Path(folder)
    cfg = read_config(folder)  # refuse folders that would not load: damaged tensors, an edited config.json
    for name in (WEIGHTS_NAME, PRETRAINING_NAME):
        if name == WEIGHTS_NAME or (folder / name).is_file():
            read_weights(folder / name, cfg, folder / CONFIG_NAME)
    api = HfApi(token=token, library_name="clmae", library_version=__version__)
    if create_repo:
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
    card = folder / CARD_NAME
    if card.is_file():  # the card's usage snippet names the repository it now lives in
        write_text(card, card.read_text(encoding="utf-8").replace("<org>/<repo>", repo_id), what="model card")
    arch = (cfg.get("clmae") or {}).get("arch") or cfg["architecture"]
    info = api.upload_folder(
        folder_path=folder,
        repo_id=repo_id,
        revision=revision,
        commit_message=commit_message or f"Upload {arch} weights with clmae {__version__}",
    )
    entry = manifest_entry(folder, repo_id, info.oid)
    print(f"commit {info.oid}  {info.commit_url}")
    for name, digest in entry["files"].items():
        print(f"{digest}  {name}")  # sha256sum format
    print("registry entry for clmae/hub/manifest.json:")
    print(json.dumps(entry, indent=2))
    return entry
