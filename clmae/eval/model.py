"""Resolve ``--model``: raw pixels, a randomly initialised architecture, weights, a bare file or a checkpoint.

Weights are read as :func:`clmae.load_pretrained` reads them, through the one weight-spec reader
(:func:`clmae.hub.parse_spec`) and loader (:func:`clmae.hub.read_encoder`): a registry name (``arch.tag`` or an
alias), ``hf-hub:org/repo[@rev]``, ``local-dir:/path``, a weights folder (clmae's, timm's or a ``transformers``
ViTMAE folder) or its ``model.safetensors`` / ``pretraining.safetensors`` file; the result records the file's sha256
and, from the Hub, the repository and revision. What only evaluation takes:

* ``raw-pixels`` -- no encoder: the flattened, normalised image is the feature (a reference point).
* a clmae architecture (``clmae list``) -- the encoder as pretraining starts it: ``create_pretraining_model(name,
  method="mae")`` (MAE's initialisation) after ``torch.manual_seed(init_seed)``; the other reference point.
* a bare ``.safetensors`` file: encoder keys (timm's) or a whole pretraining model (``encoder.*`` keys); the
  architecture comes from ``arch=NAME``.
* a torch checkpoint (``.pt``/``.pth``): clmae's or the CL-MAE reference's, read with ``weights_only=True``; the
  architecture comes from its ``config`` entry or ``arch=NAME``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .._checkpoint_file import load_torch_checkpoint
from .._files import sha256_file
from .._safetensors import check_finite, read_safetensors
from ..hub import EncoderWeights, load_encoder_state, parse_spec, read_encoder
from ..hub.convert import encoder_state
from ..hub.resolve import CHECKPOINT_SUFFIXES
from ..models import PretrainingConfig, create_encoder, create_pretraining_model, get_arch, list_models

RAW_PIXELS = "raw-pixels"
__all__ = ["RAW_PIXELS", "ResolvedModel", "encoder_state", "resolve_model"]


@dataclass
class ResolvedModel:
    """A model to evaluate: how to build its encoder and the weights to load into it.

    Attributes:
        spec: ``--model`` as given.
        kind: ``"raw-pixels"``, ``"architecture"``, ``"folder"``, ``"hub"``, ``"safetensors"`` or ``"checkpoint"``.
        info: what the result JSON records (architecture, sha256 of the weights file or the init seed, overrides).
        build: ``build(**timm_overrides)`` makes the encoder architecture (random weights); ``None`` for raw pixels.
        state_dict: encoder weights (timm keys); ``None`` for raw pixels.
        antialias: whether resampled positions are antialiased (timm's default; not for a ``transformers`` ViTMAE,
            whose ``interpolate_pos_encoding`` resamples without).
    """

    spec: str
    kind: str
    info: dict[str, Any]
    build: Callable[..., VisionTransformer] | None = None
    state_dict: dict[str, torch.Tensor] | None = field(default=None, repr=False)
    antialias: bool = True

    @property
    def is_raw(self) -> bool:
        """True for ``raw-pixels``."""
        return self.build is None

    def encoder(self, **overrides: Any) -> VisionTransformer:
        """The encoder with its weights, built with timm ``overrides`` (e.g. ``drop_path_rate``; ``img_size``,
        ``patch_size``, ``in_chans``: the weights are adapted as :func:`clmae.load_pretrained` adapts them, through
        the same loader)."""
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
        return load_encoder_state(model, state or {}, repr(self.spec), optional, fix, antialias=self.antialias)


def _arch_builder(name: str, overrides: dict[str, Any]) -> Callable[..., VisionTransformer]:
    get_arch(name)  # a clear error for unknown names
    return lambda **kw: create_encoder(name, **{**overrides, **kw})


def _from_architecture(name: str, overrides: dict[str, Any], init_seed: int) -> ResolvedModel:
    torch.manual_seed(init_seed)
    state = create_pretraining_model(name, method="mae", **overrides).encoder.state_dict()
    info = {"arch": name, "weights": f"random init (MAE's), init_seed={init_seed}", "overrides": overrides}
    return ResolvedModel(name, "architecture", info, _arch_builder(name, overrides), state)


def _from_weights(spec: str, kind: str, weights: EncoderWeights, overrides: dict[str, Any]) -> ResolvedModel:
    """Weights read by the hub's loader: what :func:`clmae.load_pretrained` reads for the same spec."""
    src = weights.source
    info: dict[str, Any] = {"arch": weights.arch}
    if weights.is_vitmae:
        info.update(format="transformers ViTMAE", file=src.name)
    else:
        info.update(timm_arch=weights.config["architecture"], file=str(weights.file), sha256=sha256_file(weights.file))
    info["overrides"] = overrides
    if src.repo_id is not None or kind == "hub":
        info.update(repo_id=src.repo_id, revision=src.revision)
    return ResolvedModel(spec, kind, info, weights.builder(overrides), weights.state, weights.antialias)


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


def _from_bare_file(path: Path, arch: str | None, overrides: dict[str, Any]) -> ResolvedModel:
    """A bare ``.safetensors`` file (tensors without a ``config.json``) or a torch checkpoint."""
    config: dict[str, Any] = {}
    if path.suffix.lower() == ".safetensors":
        kind, state = "safetensors", read_safetensors(path)
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
    path = Path(spec).expanduser()
    if spec in list_models() and not path.is_dir():
        return _from_architecture(spec, overrides, init_seed)
    if path.is_file() and path.suffix.lower() != ".safetensors":  # a torch checkpoint: only evaluation reads one
        return _from_bare_file(path, arch, overrides)
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise FileNotFoundError(f"--model {spec!r}: no such file")
    if arch is not None and path.suffix.lower() == ".safetensors" and path.is_file():
        return _from_bare_file(path, arch, overrides)  # arch= names the architecture of any weights file
    weights = parse_spec(spec, revision, bare=True, architectures=True)
    if weights.file is not None:
        return _from_bare_file(weights.file, arch, overrides)
    kind = "folder" if path.is_dir() else "safetensors" if path.suffix.lower() == ".safetensors" else "hub"
    return _from_weights(spec, kind, read_encoder(weights.source), overrides)
