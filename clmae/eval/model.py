"""Resolve ``--model``: raw pixels, a randomly initialised architecture, a weights folder, a file or a checkpoint.

* ``raw-pixels`` -- no encoder: the flattened, normalised image is the feature (a reference point).
* a clmae architecture (``clmae list``) -- the encoder as pretraining starts it: ``create_pretraining_model(name,
  method="mae")`` (MAE's initialisation) after ``torch.manual_seed(init_seed)``; the other reference point.
* a folder with timm's ``config.json`` + ``model.safetensors`` (what ``clmae.save_pretrained`` writes).
* a ``.safetensors`` file: encoder keys (timm's) or a whole pretraining model (``encoder.*`` keys); the architecture
  comes from ``arch=NAME`` or a ``config.json`` next to it.
* a torch checkpoint (``.pt``/``.pth``): clmae's or the CL-MAE reference's, read with ``weights_only=True``; the
  architecture comes from its ``config`` entry or ``arch=NAME``.
* a ``transformers`` ViTMAE folder or ``hf-hub:`` repo (``config.json`` with ``model_type: vit_mae``): its encoder,
  mapped onto timm's keys (:mod:`clmae.hub.vitmae`).
* published weights through ``clmae.hub``: a registry name (``arch.tag`` or an alias), ``hf-hub:org/repo[@rev]``
  or ``local-dir:/path``; the result records the repository and revision next to the file's sha256.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .._io import (
    CONFIG_NAME,
    check_finite,
    load_torch_checkpoint,
    read_config,
    read_safetensors,
    sha256_file,
)
from ..hub import build_from_config, load_encoder_state, read_weights, resolve_weight_or_explain
from ..hub.load import Source
from ..hub.vitmae import vitmae_config
from ..models import PretrainingConfig, create_encoder, create_pretraining_model, get_arch, list_models

RAW_PIXELS = "raw-pixels"
# Keys of a pretraining state dict that are not the encoder's (docs/method.md §8): the reference's and clmae's.
_NOT_ENCODER = ("masking_net.", "decoder_", "mask_token", "decoder.", "masker.")


@dataclass
class ResolvedModel:
    """A model to evaluate: how to build its encoder and the weights to load into it.

    Attributes:
        spec: ``--model`` as given.
        kind: ``"raw-pixels"``, ``"architecture"``, ``"folder"``, ``"hub"``, ``"safetensors"`` or ``"checkpoint"``.
        info: what the result JSON records (architecture, sha256 of the weights file or the init seed, overrides).
        build: ``build(**timm_overrides)`` makes the encoder architecture (random weights); ``None`` for raw pixels.
        state_dict: encoder weights (timm keys); ``None`` for raw pixels.
    """

    spec: str
    kind: str
    info: dict[str, Any]
    build: Callable[..., VisionTransformer] | None = None
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def is_raw(self) -> bool:
        """True for ``raw-pixels``."""
        return self.build is None

    def encoder(self, **overrides: Any) -> VisionTransformer:
        """The encoder with its weights, built with timm ``overrides`` (e.g. ``drop_path_rate``, ``img_size``: the
        positions are resampled as :func:`clmae.load_pretrained` does, through the same loader)."""
        if self.build is None:
            raise ValueError("raw-pixels has no encoder")
        return self.load_into(self.build(**overrides))

    def load_into(
        self, model: nn.Module, state: dict[str, torch.Tensor] | None = None, optional: tuple[str, ...] = ()
    ) -> nn.Module:
        """Load the weights (or ``state``, e.g. a subset of them) into ``model``; keys and shapes are checked.

        Args:
            model: the encoder the weights go into.
            state: the weights (default: :attr:`state_dict`).
            optional: key prefixes of ``model`` the weights may lack (a fresh head).
        """
        state = self.state_dict if state is None else state
        fix = "pass arch=NAME (and model_kwargs.KEY=VALUE overrides) to match how it was built"
        return load_encoder_state(model, state or {}, repr(self.spec), optional, fix)


def encoder_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The encoder's entries of a state dict, with timm's key names.

    Accepts an encoder state dict (timm keys), a clmae pretraining model's (``encoder.*``) or a CL-MAE / MAE
    reference checkpoint's ``model`` (timm keys plus ``masking_net.*``, ``decoder_*``, ``mask_token``).
    """
    if any(k.startswith("encoder.") for k in state):
        return {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
    return {k: v for k, v in state.items() if not k.startswith(_NOT_ENCODER)}


def _arch_builder(name: str, overrides: dict[str, Any]) -> Callable[..., VisionTransformer]:
    get_arch(name)  # a clear error for unknown names
    return lambda **kw: create_encoder(name, **{**overrides, **kw})


def _from_architecture(name: str, overrides: dict[str, Any], init_seed: int) -> ResolvedModel:
    torch.manual_seed(init_seed)
    state = create_pretraining_model(name, method="mae", **overrides).encoder.state_dict()
    info = {"arch": name, "weights": f"random init (MAE's), init_seed={init_seed}", "overrides": overrides}
    return ResolvedModel(name, "architecture", info, _arch_builder(name, overrides), state)


def _from_files(
    spec: str, kind: str, config: Path, weights: Path, overrides: dict[str, Any], verified: bool = False
) -> ResolvedModel:
    cfg = read_config(config)
    info = {"arch": (cfg.get("clmae") or {}).get("arch") or cfg["architecture"], "timm_arch": cfg["architecture"]}
    info.update(file=str(weights), sha256=sha256_file(weights), overrides=overrides)
    state = encoder_state(read_weights(weights, cfg, config, verified=verified))
    return ResolvedModel(spec, kind, info, lambda **kw: build_from_config(cfg, **{**overrides, **kw}), state)


def _from_vitmae(spec: str, kind: str, src: Any, hf: dict[str, Any], overrides: dict[str, Any]) -> ResolvedModel:
    """A transformers ViTMAE folder or repo (:mod:`clmae.hub.vitmae`): its encoder, keys mapped onto timm's."""
    from ..hub import vitmae

    state, _ = vitmae.read_clmae_state(src, None, None)
    preprocessing = vitmae.preprocessing_of(src, hf, None, None)
    arch, _ = vitmae.pick_arch(vitmae.encoder_args(hf))
    info = {"arch": arch, "format": "transformers ViTMAE", "file": src.name, "overrides": overrides}
    if src.repo_id is not None:
        info.update(repo_id=src.repo_id, revision=src.revision)
    build = lambda **kw: vitmae.build_encoder(hf, preprocessing, **{**overrides, **kw})  # noqa: E731
    return ResolvedModel(spec, kind, info, build, state)


def _from_folder(folder: Path, overrides: dict[str, Any]) -> ResolvedModel:
    if (hf := vitmae_config(folder / CONFIG_NAME)) is not None:
        return _from_vitmae(str(folder), "folder", Source(str(folder), folder=folder), hf, overrides)
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"{folder} is not a weights folder: it needs config.json (timm format) and model.safetensors, as written "
            "by clmae.save_pretrained()"
        )
    return _from_files(str(folder), "folder", folder / "config.json", folder / "model.safetensors", overrides)


def _from_hub(spec: str, revision: str | None, overrides: dict[str, Any]) -> ResolvedModel:
    """Published weights through ``clmae.hub`` (registry names, ``hf-hub:org/repo[@rev]``, ``local-dir:/path``).

    The hub downloads (and, for registry weights, verifies) ``config.json`` and ``model.safetensors``; they are
    then read like a local weights folder.
    """
    src = resolve_weight_or_explain(spec, revision)
    filename = src.encoder_file()  # model.safetensors, or the whole model's file where the encoder is stored there
    needed = (CONFIG_NAME, filename)
    config = src.file(CONFIG_NAME, None, None, needed)
    if (hf := vitmae_config(config)) is not None:
        return _from_vitmae(spec, "hub", src, hf, overrides)
    weights = src.file(filename, None, None, needed)
    resolved = _from_files(spec, "hub", config, weights, overrides, verified=src.verified(filename))
    resolved.info.update(repo_id=src.repo_id, revision=src.revision)
    return resolved


def _arch_from_config(config: Any) -> tuple[str | None, dict[str, Any]]:
    """Architecture and encoder arguments recorded in a checkpoint's ``config``.

    Two layouts: a training run's config (``{"model": NAME, "model_kwargs": {...}}``, clmae's trainer) and a
    :class:`~clmae.models.PretrainingConfig` (``{"arch": NAME, ...}``). Arguments
    that only the decoder or the masking module take are dropped.
    """
    if not isinstance(config, dict):
        return None, {}
    if isinstance(config.get("model"), str):
        pretraining = PretrainingConfig.from_kwargs(config["model"], **dict(config.get("model_kwargs") or {}))
    elif isinstance(config.get("arch"), str):
        pretraining = PretrainingConfig.from_dict(config)
    else:
        return None, {}
    return pretraining.arch, dict(pretraining.encoder_kwargs)


def _from_file(path: Path, arch: str | None, overrides: dict[str, Any]) -> ResolvedModel:
    config: dict[str, Any] = {}
    if path.suffix == ".safetensors":
        kind, state = "safetensors", read_safetensors(path)
        if arch is None and (path.parent / "config.json").is_file():  # a file of a weights folder
            return _from_files(str(path), kind, path.parent / "config.json", path, overrides)
    else:
        kind, ckpt = "checkpoint", load_torch_checkpoint(path)
        state = ckpt.get("model", ckpt.get("state_dict", ckpt))
        config = ckpt.get("config") or ckpt.get("model_config") or {}
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"checkpoint {path} has no state dict of tensors under 'model' or 'state_dict'")
        check_finite(state, str(path))
    recorded_arch, recorded_overrides = _arch_from_config(config)
    arch = arch or recorded_arch
    if arch is None:
        raise ValueError(
            f"cannot tell the architecture of {path}; pass arch=NAME with a name from `clmae list` (and "
            "model_kwargs.KEY=VALUE for any size overrides it was trained with)"
        )
    overrides = {**recorded_overrides, **overrides}
    info = {"arch": arch, "file": str(path), "sha256": sha256_file(path), "overrides": overrides}
    return ResolvedModel(str(path), kind, info, _arch_builder(arch, overrides), encoder_state(state))


def resolve_model(
    spec: str,
    *,
    arch: str | None = None,
    overrides: dict[str, Any] | None = None,
    init_seed: int = 0,
    revision: str | None = None,
) -> ResolvedModel:
    """Resolve ``--model`` (see the module docstring).

    Args:
        spec: ``raw-pixels``, an architecture name, a weights folder, a ``.safetensors`` file or a checkpoint.
        arch: architecture of a bare weights file or checkpoint that does not name its own.
        overrides: timm ``VisionTransformer`` arguments (e.g. ``embed_dim``, ``depth``) for architectures and files.
        init_seed: seed of the random initialisation when ``spec`` is an architecture name.
        revision: Hub revision for published weights (default: the registry's pinned commit).

    Returns:
        A :class:`ResolvedModel`.
    """
    overrides = dict(overrides or {})
    if spec == RAW_PIXELS:
        if overrides or arch:
            raise ValueError("raw-pixels takes no arch= or model_kwargs.KEY= options")
        return ResolvedModel(spec, "raw-pixels", {"arch": RAW_PIXELS, "weights": "none"})
    path = Path(spec)
    if path.is_dir():
        return _from_folder(path, overrides)
    if path.is_file():
        return _from_file(path, arch, overrides)
    if spec in list_models():
        return _from_architecture(spec, overrides, init_seed)
    if spec.startswith(("hf-hub:", "local-dir:")):
        return _from_hub(spec, revision, overrides)
    if "/" in spec or spec.endswith((".safetensors", ".pt", ".pth")):
        raise FileNotFoundError(f"--model {spec!r}: no such file or folder")
    return _from_hub(spec, revision, overrides)  # a registry name (arch.tag) or alias
