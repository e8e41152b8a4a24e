"""``load_pretrained`` (the encoder) and ``load_pretraining_model`` (the whole CL-MAE) from names, Hub repos or
folders, and the two steps every weights loader of clmae shares: :func:`build_from_config`, :func:`load_encoder_state`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer

from .._io import (
    CONFIG_NAME,
    PRETRAINING_NAME,
    WEIGHTS_NAME,
    check_state,
    check_weights_config,
    read_config,
    read_safetensors,
)
from ..models import CLMAE, PretrainingConfig, create_pretraining_model, get_arch, list_models, set_norm_eps
from ..models.config import check_encoder_kwargs
from ..models.factory import SIZE_ARGS, check_timm_fits
from . import registry, vitmae
from .download import check_repo_id, check_revision, check_sha256, fetch
from .registry import UnknownWeightError

TRAIN_COMMAND = "clmae train --recipe {recipe} --data DATA --out runs/{recipe}"
# Files that are torch pickles (training or foreign checkpoints), never a weights folder.
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".pkl", ".tar")
WHAT_LOADS = (
    "Weights load from a folder (config.json + model.safetensors, as clmae.save_pretrained writes it), its "
    "model.safetensors file, a registry name or alias (clmae.list_pretrained()), hf-hub:org/repo[@revision] or "
    "local-dir:/path; a transformers ViTMAE folder or repo loads too"
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

    def encoder_file(self) -> str:
        """The file that holds the encoder: ``model.safetensors``, or ``pretraining.safetensors`` where the weight
        has no separate encoder file (the bundled weights store each tensor once, in the whole model's file)."""
        if self.pinned:  # the registry lists the files
            only_whole = WEIGHTS_NAME not in self.sha256 and PRETRAINING_NAME in self.sha256
            return PRETRAINING_NAME if only_whole else WEIGHTS_NAME
        folder = self.folder
        if folder is not None and not (folder / WEIGHTS_NAME).is_file() and (folder / PRETRAINING_NAME).is_file():
            return PRETRAINING_NAME
        return WEIGHTS_NAME

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
                raise FileNotFoundError(
                    f"{path} does not exist; a weights folder holds {CONFIG_NAME} and {WEIGHTS_NAME}"
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
            stacklevel=4,
        )
    elif revision is not None and revision != entry.revision:
        warnings.warn(
            f"{entry.name}: revision {revision!r} differs from the registry's pinned {entry.revision}; its files "
            "are not verified against the registry's sha256",
            UserWarning,
            stacklevel=4,
        )
    pinned = entry.status == registry.PUBLISHED and rev == entry.revision
    shas = entry.files if pinned else {}
    return Source(entry.name, repo_id=entry.hub_repo, revision=rev, sha256=dict(shas), entry=entry, pinned=pinned)


def resolve(name_or_path: str | os.PathLike, revision: str | None = None) -> Source:
    """Turn a name into a :class:`Source`.

    Accepted: a folder path; ``local-dir:/path``; ``hf-hub:org/repo[@revision]``; a registry name (``arch.tag``), alias
    (``vit_b``) or an architecture with a single registry entry.
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
                stacklevel=3,
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
        return Source(name, folder=path.parent)
    raise ValueError(
        f"{name} is a bare weights file: its architecture comes from the {CONFIG_NAME} of a weights folder, where it "
        f"is {WEIGHTS_NAME} (clmae.save_pretrained writes both). Load that folder, or evaluate the file with "
        f"`clmae eval knn --model {name} arch=NAME --data DATA`. {WHAT_LOADS}"
    )


def resolve_weight_or_explain(name: str, revision: str | None = None) -> Source:
    """:func:`resolve` for a name that is not an architecture; if it is no weight either, the ``ValueError`` names
    the close architectures as well as the close weights."""
    try:
        return resolve(name, revision)
    except UnknownWeightError as weights_error:  # only an unknown name: any other error (a checksum...) stands as is
        try:
            get_arch(name)  # raises with close architecture names
        except ValueError as arch_error:
            raise UnknownWeightError(f"{arch_error} Nor is it a weight: {weights_error}") from None
        raise


def _preprocessing(cfg: dict[str, Any]) -> dict[str, Any]:
    """A ``config.json``'s ``pretrained_cfg`` as timm keeps it (JSON lists back to tuples)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in (cfg.get("pretrained_cfg") or {}).items()}


def build_from_config(cfg: dict[str, Any], **kwargs: Any) -> VisionTransformer:
    """A randomly initialised encoder as a weights folder's ``config.json`` describes it.

    ``timm.create_model(architecture, num_classes=..., **model_args, **kwargs)`` with the config's preprocessing as
    its ``pretrained_cfg``; an ``architecture`` that only clmae knows (e.g. ``vit_tiny_patch4_28``) is built from its
    timm base.

    Args:
        cfg: the ``config.json`` content (:func:`clmae._io.read_config`).
        **kwargs: timm arguments that override the config's (``num_classes``, ``img_size``, ``drop_path_rate``...).
    """
    check_encoder_kwargs(kwargs)
    arch = cfg["architecture"]
    args = {**cfg.get("model_args", {}), "num_classes": cfg.get("num_classes", 0), **kwargs}
    if not timm.is_model(arch) and arch in list_models():
        spec = get_arch(arch)
        arch, args = spec.timm_arch, {**spec.model_args, **args}
    if not timm.is_model(arch):
        raise ValueError(f"config.json names architecture {arch!r}, which neither timm nor clmae knows")
    args.setdefault("pretrained_cfg", {**_preprocessing(cfg), "architecture": arch})
    given = {**cfg.get("model_args", {}), **kwargs}  # what config.json and the caller chose: named if too large
    check_timm_fits(arch, args, {k: v for k, v in given.items() if k in SIZE_ARGS})
    try:
        model = timm.create_model(arch, pretrained=False, **args)
    except (RuntimeError, TypeError, ValueError, AssertionError) as e:
        raise ValueError(f"config.json does not describe a buildable timm model ({arch}, {args}): {e}") from e
    if not isinstance(model, VisionTransformer):
        raise ValueError(f"config.json architecture {arch!r} is not a timm VisionTransformer")
    eps = (cfg.get("clmae") or {}).get("norm_eps")
    if eps is not None:  # a LayerNorm epsilon other than timm's (weights from transformers ViTMAE)
        set_norm_eps(model, eps)
    # Keep the advertised input size true when img_size / in_chans were overridden.
    model.pretrained_cfg["input_size"] = (model.patch_embed.proj.in_channels, *model.patch_embed.img_size)
    return model


def read_weights(
    path: str | Path, cfg: dict[str, Any] | None, config_path: str | Path | None, *, verified: bool = False
) -> dict[str, torch.Tensor]:
    """A weights file's tensors, checked against its ``config.json`` and itself.

    What :func:`clmae.save_pretrained` recorded in the file's metadata (the architecture, its model arguments, the
    pretraining config) must equal what ``config.json`` says; each tensor must match its recorded sha256 and hold no
    NaN/inf. Files without that metadata (older folders, other tools) get the NaN/inf check only.

    Args:
        path: ``model.safetensors`` or ``pretraining.safetensors``.
        cfg: the ``config.json`` content (``None``: no comparison).
        config_path: where ``cfg`` was read, for the message.
        verified: the file already matched a registry sha256: the tensor checks are skipped.

    Raises:
        ValueError: naming the file and the differing argument or the damaged tensor.
    """
    if cfg is not None:
        check_weights_config(path, cfg, config_path or CONFIG_NAME)
    return read_safetensors(path, verify=not verified)


def read_encoder_weights(
    src: Source,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    config_path: Path | None = None,
) -> tuple[dict[str, Any], Path, Path, dict[str, torch.Tensor]]:
    """A weight's ``config.json`` and encoder tensors (timm keys), fetched and checked.

    The encoder comes from ``model.safetensors``, or from the ``encoder.*`` tensors of ``pretraining.safetensors``
    where the weight stores no separate encoder file (:meth:`Source.encoder_file`): the same tensors, stored once.

    Args:
        src: where the weight's files come from.
        cache_dir: Hub cache folder.
        local_files_only: never touch the network.
        config_path: the ``config.json`` already fetched, if it was.

    Returns:
        ``(config, config path, weights file, encoder state)``.
    """
    filename = src.encoder_file()
    needed = (CONFIG_NAME, filename)
    config_path = config_path or src.file(CONFIG_NAME, cache_dir, local_files_only, needed)
    cfg = read_config(config_path)
    path = src.file(filename, cache_dir, local_files_only, needed)
    state = read_weights(path, cfg, config_path, verified=src.verified(filename))
    if filename == PRETRAINING_NAME:
        state = {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
        if not state:
            raise ValueError(f"{path} holds no encoder.* tensors: it is not a pretraining model's weights")
    return cfg, config_path, path, state


def load_encoder_state(
    model: VisionTransformer,
    state: dict[str, torch.Tensor],
    where: str,
    optional: tuple[str, ...] = ("head.",),
    fix: str | None = None,
) -> VisionTransformer:
    """Load encoder weights (timm keys) into ``model``; positions are resampled when its ``img_size`` differs.

    Args:
        model: the encoder (e.g. from :func:`build_from_config` or :func:`clmae.create_model`).
        state: the weights.
        where: the weights' origin, for the error message.
        optional: key prefixes of ``model`` the weights may lack (a fresh classifier head).
        fix: what the error message tells to do about a mismatch.

    Returns:
        ``model``.

    Raises:
        ValueError: keys or shapes differ (beyond the positions), naming them.
    """
    pos = state.get("pos_embed")
    if pos is not None and model.pos_embed is not None and pos.shape != model.pos_embed.shape:
        # A different img_size was asked for: resample the positions as timm does.
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        grid = list(model.patch_embed.grid_size)
        state = {**state, "pos_embed": resample_abs_pos_embed(pos, grid, num_prefix_tokens=prefix)}
    check_state(model, state, where, optional=optional, fix=fix)
    model.load_state_dict(state, strict=False)
    return model


def load_pretrained(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
    **kwargs: Any,
) -> VisionTransformer:
    """Load a pretrained encoder, ready to extract features: a timm ``VisionTransformer`` in eval mode.

    :func:`clmae.create_model` with ``pretrained=True`` gives the same model in train mode (timm's contract), for
    fine-tuning. No hook is attached: check a batch explicitly with :func:`clmae.check_input`.

    Args:
        name_or_path: a registry name or alias (``"vit_b"``, ``"vit_base_patch16_224.mae"``; see
            :func:`clmae.list_pretrained`), ``"hf-hub:org/repo[@revision]"``, ``"local-dir:/path"`` or a folder.
        revision: Hub revision (default: the registry's pinned commit; ``main`` for hf-hub names).
        cache_dir: Hub cache folder (default: ``$HF_HUB_CACHE``).
        local_files_only: never touch the network; ``None`` follows ``HF_HUB_OFFLINE``.
        **kwargs: timm model arguments (``num_classes`` adds a fresh head, ``img_size`` resamples the positions,
            ``drop_path_rate``, ``global_pool``...).

    Returns:
        The encoder, with ``model.pretrained_cfg`` from the weights' ``config.json``.
    """
    check_encoder_kwargs(kwargs)  # before any file is fetched
    src = resolve(name_or_path, revision)
    needed = (CONFIG_NAME, src.encoder_file())
    config_path = src.file(CONFIG_NAME, cache_dir, local_files_only, needed)
    if (hf := vitmae.vitmae_config(config_path)) is not None:  # a transformers ViTMAE folder
        return vitmae.load_encoder(src, hf, cache_dir, local_files_only, **kwargs)
    cfg, _, weights, state = read_encoder_weights(src, cache_dir, local_files_only, config_path)
    model = load_encoder_state(build_from_config(cfg, **kwargs), state, str(weights))
    pcfg = {**_preprocessing(cfg), "architecture": cfg["architecture"], "source": src.name}
    if src.repo_id is not None:
        pcfg.update(hf_hub_id=src.repo_id, revision=src.revision)
    if src.entry is not None:
        pcfg.update(tag=src.entry.tag, method=src.entry.method)
    elif cfg.get("clmae", {}).get("method"):
        pcfg["method"] = cfg["clmae"]["method"]
    pcfg["input_size"] = (model.patch_embed.proj.in_channels, *model.patch_embed.img_size)
    pcfg["num_classes"] = model.num_classes
    model.pretrained_cfg = model.default_cfg = pcfg  # timm keeps default_cfg as an alias
    return model.eval()


def load_pretraining_model(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
    local_files_only: bool | None = None,
) -> CLMAE:
    """Rebuild the whole pretraining model (encoder, decoder, masking module) from ``pretraining.safetensors``.

    Args:
        name_or_path: as for :func:`load_pretrained`; the weights must include ``pretraining.safetensors``.
        revision: Hub revision.
        cache_dir: Hub cache folder.
        local_files_only: never touch the network.

    Returns:
        The :class:`~clmae.models.CLMAE` in eval mode (call ``.train()`` to continue pretraining).
    """
    src = resolve(name_or_path, revision)
    needed = (CONFIG_NAME, PRETRAINING_NAME)
    config_path = src.file(CONFIG_NAME, cache_dir, local_files_only, needed)
    if (hf := vitmae.vitmae_config(config_path)) is not None:  # a transformers ViTMAEForPreTraining folder
        return vitmae.load_pretraining(src, hf, cache_dir, local_files_only)
    cfg = read_config(config_path)
    config = (cfg.get("clmae") or {}).get("config")
    if not config:
        raise ValueError(
            f"{src.name} holds an encoder only (its config.json has no clmae.config): the decoder and masking module "
            "were not published; use load_pretrained() for the encoder"
        )
    path = src.file(PRETRAINING_NAME, cache_dir, local_files_only, needed)
    state = read_weights(path, cfg, config_path, verified=src.verified(PRETRAINING_NAME))
    model = create_pretraining_model(PretrainingConfig.from_dict(config))
    check_state(model, state, str(path))
    model.load_state_dict(state)
    return model.eval()


def load_pretraining(*args: Any, **kwargs: Any) -> CLMAE:
    """Deprecated name of :func:`load_pretraining_model` (easily confused with :func:`load_pretrained`)."""
    warnings.warn(
        "clmae.load_pretraining is deprecated; use clmae.load_pretraining_model", DeprecationWarning, stacklevel=2
    )
    return load_pretraining_model(*args, **kwargs)
