"""The end of a run: the encoder and the full pretraining model as a Hub-ready weights folder, written whole or not
at all; and the same folder from any training checkpoint (``clmae export``)."""

from __future__ import annotations

import glob
import json
import os
import re
from pathlib import Path
from typing import Any

from .._atomic import check_target, remove, temp_path, write_folder, write_text
from .._disk import state_nbytes, writing
from ..data.spec import check_path
from ..hub import save_pretrained
from ..hub.save import is_weights_folder
from ..hub.vitmae_save import is_vitmae_folder, save_vitmae_folder
from ..models import CLMAE, METHOD_TITLES
from .checkpoint import checkpoint_model, load_checkpoint
from .config import TrainConfig

MARKER = "train_config.json"  # written last into the temporary folder; the folder is renamed into place after it


def export_pretrained(
    model: CLMAE, folder: str | os.PathLike, train_config: dict[str, Any], *, overwrite: bool = False
) -> Path:
    """Write ``model`` with :func:`clmae.save_pretrained` (timm ``config.json``, ``model.safetensors`` with the
    encoder, ``pretraining.safetensors`` with the whole model, model card) and the run's ``train_config.json``.

    The files go to a temporary folder beside ``folder``, which then replaces ``folder``: a crash at any moment
    leaves the previous folder, or no folder (then ``clmae train --resume auto`` or ``clmae export`` writes it),
    never a partial one; what a killed export left is removed by the next (:func:`remove_export_debris`). A full disk
    fails with :class:`~clmae._disk.DiskFullError` (the folder, the bytes needed and free), the temporary folder
    removed and the previous export intact. An existing ``folder`` is replaced only if it is empty or an earlier
    clmae weights folder, or with ``overwrite``.

    Args:
        model: the trained pretraining model.
        folder: output folder.
        train_config: the run's ``TrainConfig`` as a dict (recorded in the folder).
        overwrite: replace ``folder`` as a whole whatever it holds (``clmae export --overwrite``).
    """
    folder = check_path(folder, "the weights folder")
    description = (
        f"{METHOD_TITLES[model.method]} pretraining of `{train_config['model']}` for {train_config['epochs']} epochs "
        f"on `{train_config.get('data', '')}` with `clmae train` (recipe `{train_config.get('recipe') or 'custom'}`)."
    )
    if train_config.get("init"):
        description += f" Training started from the weights `{train_config['init']}`."
    remove_export_debris(folder)
    check_target(folder, is_weights_folder, "a clmae-format weights folder", overwrite=overwrite)

    def build(tmp: Path) -> None:
        save_pretrained(model, tmp, name=train_config["model"], metadata={"description": description})
        write_text(tmp / MARKER, json.dumps(train_config, indent=2), what="run config")  # last: the folder is whole

    needed = state_nbytes(model.encoder.state_dict()) + state_nbytes(model.state_dict())  # the two weights files
    # write_folder removes its temporary folder itself; writing() turns a full disk into one line with the numbers.
    with writing(folder.parent, needed, f"the weights folder {folder.name}", lambda: None):
        write_folder(folder, build, what="weights folder")
    return folder


def _alive(pid: int) -> bool:
    if pid == os.getpid():  # an earlier process of the same id (ids are reused): not this one, which is not exporting
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):  # another user's process: alive
        return True
    return True


def remove_export_debris(folder: str | os.PathLike) -> list[Path]:
    """Remove what exports to ``folder`` killed half-way left beside it (``.NAME.tmpPID``, ``.NAME.oldPID`` of
    processes that no longer run; :func:`clmae._atomic.temp_path` names) and return the paths removed. A previous
    export that a killed process had set aside (``.NAME.oldPID``) while ``folder`` is missing is put back first: it
    is the last complete one."""
    folder = Path(folder)
    prefix = temp_path(folder, "tmp", 0).name[: -len(".tmp0")]  # .NAME, or .SHORT~HASH for a long NAME
    pattern = re.compile(rf"^{re.escape(prefix)}\.(tmp|old)(\d+)$")
    stale = []
    for path in sorted(folder.parent.glob(f"{glob.escape(prefix)}.*")) if folder.parent.is_dir() else []:
        m = pattern.match(path.name)
        if m and not _alive(int(m.group(2))):
            stale.append((m.group(1), path))
    for kind, path in stale:
        if kind == "old" and not folder.exists() and export_complete(path):
            os.replace(path, folder)
    removed = []
    for _, path in stale:
        if path.exists() or path.is_symlink():
            remove(path)
            removed.append(path)
    return removed


def export_complete(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is a weights folder written whole by :func:`export_pretrained`."""
    folder = Path(folder)
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors", MARKER))


def export_checkpoint(checkpoint: str | os.PathLike, folder: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the weights folder of a training checkpoint (``clmae export CHECKPOINT OUT``), verified first.

    Args:
        checkpoint: a ``checkpoint-*.pt`` written by ``clmae train``.
        folder: output folder (replaced whole if it is an earlier clmae weights folder, or with ``overwrite``).
        overwrite: replace ``folder`` whatever it holds.
    """
    check_target(
        check_path(folder, "the weights folder"),
        is_weights_folder,
        "a clmae-format weights folder",
        overwrite=overwrite,
    )
    state = load_checkpoint(checkpoint)
    model = checkpoint_model(state)
    train_config = TrainConfig.from_dict(state["config"]).to_dict()
    train_config["exported_from"] = {
        "checkpoint": Path(checkpoint).name,
        "epochs_done": state["epoch"],
        "updates_done": state["step"],
        "updates_into_next_epoch": state.get("epoch_step", 0),
    }
    return export_pretrained(model.eval(), folder, train_config, overwrite=overwrite)


def export_checkpoint_vitmae(
    checkpoint: str | os.PathLike,
    folder: str | os.PathLike,
    decoder: bool = False,
    in_chans: int | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """A training checkpoint (verified first) as a ``transformers`` ViTMAE folder (:func:`clmae.hub.save_vitmae`;
    ``in_chans=3``: a greyscale model that takes RGB images), written whole; ``folder`` is replaced only if it is an
    earlier clmae ViTMAE export, or with ``overwrite``."""
    check_target(folder, is_vitmae_folder, "a transformers ViTMAE folder written by clmae", overwrite=overwrite)
    model = checkpoint_model(load_checkpoint(checkpoint)).eval()
    return save_vitmae_folder(
        model if decoder else model.encoder, folder, decoder=decoder, in_chans=in_chans, overwrite=overwrite
    )
