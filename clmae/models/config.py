"""The pretraining model's one configuration: :class:`PretrainingConfig`.

``create_pretraining_model``, :class:`~clmae.models.CLMAE`, ``save_pretrained``, ``load_pretraining_model``,
``clmae convert`` and the trainer all read and write this dataclass; ``config.json`` stores it as
``clmae.config`` (its :meth:`PretrainingConfig.to_dict`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import types
import typing
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from timm.models.vision_transformer import VisionTransformer

from .._overrides import coerce
from . import losses
from .masking import check_mask_ratio
from .methods import METHODS


def check_method(method: str) -> str:
    """``method`` if it is ``"clmae"`` or ``"mae"``; a ``ValueError`` otherwise."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def encoder_arguments() -> list[str]:
    """The keyword arguments of timm's ``VisionTransformer`` (what ``encoder_kwargs`` may set)."""
    return [p for p in inspect.signature(VisionTransformer.__init__).parameters if p not in ("self", "kwargs")]


@dataclass
class PretrainingConfig:
    """Everything needed to rebuild a pretraining model (weights aside).

    Attributes:
        arch: the encoder architecture (:func:`clmae.list_models`).
        method: ``"clmae"`` (learned curriculum masks) or ``"mae"`` (uniform random masks, no masking module).
        mask_ratio: fraction of patches hidden in the MAE step; the masking module's KL target keeps
            ``1 - mask_ratio`` (reference: 0.75).
        norm_pix_loss: per-patch normalised pixel targets (MAE's option; reference CL-MAE script: off).
        decoder_embed_dim: decoder width; ``None`` takes the architecture's (512 for the ImageNet models).
        decoder_depth: decoder blocks; ``None`` takes the architecture's (8).
        decoder_num_heads: decoder heads; ``None`` takes the architecture's (16).
        norm_eps: LayerNorm epsilon of the encoder and the decoder (MAE and timm: 1e-6; ``transformers`` ViTMAE
            weights: their ``layer_norm_eps``, 1e-12 for ``facebook/vit-mae-*``).
        masker_depth: masking-module blocks (reference: 5).
        masker_num_heads: masking-module heads (reference: 4).
        masker_mlp_ratio: masking-module MLP ratio (reference: 4).
        masker_norm_eps: masking-module LayerNorm epsilon (reference: 1e-5).
        gauss_sigma: width of the Gaussian term (reference: 0.12).
        gauss_weight: weight of the Gaussian term (reference: 1.0).
        kl_weight: weight of the KL term (reference: 0.1).
        kl_batch_scale: the KL term is the batch mean times this (reference: a sum over a per-GPU batch of 256).
        div_weight: weight of the diversity term (reference: 2.0).
        div_scale: distance scale inside the diversity term's exponential (reference: 0.1).
        encoder_kwargs: timm ``VisionTransformer`` arguments that override the architecture's (``depth``,
            ``img_size``, ``drop_path_rate``, ...).
    """

    arch: str
    method: str = "clmae"
    mask_ratio: float = 0.75
    norm_pix_loss: bool = False
    decoder_embed_dim: int | None = None
    decoder_depth: int | None = None
    decoder_num_heads: int | None = None
    norm_eps: float = 1e-6
    masker_depth: int = 5
    masker_num_heads: int = 4
    masker_mlp_ratio: float = 4.0
    masker_norm_eps: float = 1e-5
    gauss_sigma: float = losses.GAUSS_SIGMA
    gauss_weight: float = losses.GAUSS_WEIGHT
    kl_weight: float = losses.KL_WEIGHT
    kl_batch_scale: float = losses.KL_BATCH_SCALE
    div_weight: float = losses.DIV_WEIGHT
    div_scale: float = losses.DIV_SCALE
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.arch, str):
            raise ValueError(f"arch must be an architecture name (clmae.list_models()), got {self.arch!r}")
        check_method(self.method)
        check_mask_ratio(self.mask_ratio)
        if not isinstance(self.encoder_kwargs, dict):
            raise ValueError(f"encoder_kwargs must be a dict of model arguments, got {self.encoder_kwargs!r}")
        hints = typing.get_type_hints(type(self))
        for name in _MODEL_FIELDS:
            try:
                value = coerce(getattr(self, name), hints[name], name)
            except ValueError as e:  # "option decoder_depth='x': expected int"
                expected = str(e).rsplit(": expected ", 1)[-1]
                raise ValueError(f"model argument {name}={getattr(self, name)!r}: expected {expected}") from None
            low, inclusive = _FIELD_MIN.get(name, (0, True))
            number = value is not None and not isinstance(value, bool)
            if number and not (value >= low if inclusive else value > low):
                raise ValueError(f"model argument {name} must be {'>=' if inclusive else '>'} {low}, got {value!r}")
            setattr(self, name, value)
        check_encoder_kwargs(self.encoder_kwargs)

    @classmethod
    def fields(cls) -> list[str]:
        """The field names, ``encoder_kwargs`` last."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_kwargs(cls, arch: str, method: str = "clmae", **kwargs: Any) -> PretrainingConfig:
        """Split flat keyword arguments: this dataclass's fields, the rest are encoder arguments.

        Names and types are checked here; values that only building can check (``embed_dim`` divisible by
        ``num_heads``, ...) by :func:`clmae.models.check_config`, which builds the model on the ``meta`` device.

        Args:
            arch: the encoder architecture.
            method: ``"clmae"`` or ``"mae"``.
            **kwargs: dataclass fields and timm ``VisionTransformer`` arguments.
        """
        own = set(_MODEL_FIELDS)
        encoder = {k: v for k, v in kwargs.items() if k not in own}
        return cls(arch, method, **{k: v for k, v in kwargs.items() if k in own}, encoder_kwargs=encoder)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainingConfig:
        """Read :meth:`to_dict`'s layout. Names and types are checked, values when the model is built."""
        if not isinstance(values, dict):
            raise ValueError(f"a pretraining config must be a dict (PretrainingConfig.to_dict()), got {values!r}")
        values = dict(values)
        if "arch" not in values:
            raise ValueError(f"a pretraining config needs 'arch' (an architecture name), got keys {sorted(values)}")
        encoder = values.pop("encoder_kwargs", None) or {}
        if not isinstance(encoder, dict):
            raise ValueError(f"encoder_kwargs must be a dict of model arguments, got {encoder!r}")
        arch, method = values.pop("arch"), values.pop("method", "clmae")
        return cls.from_kwargs(arch, method, **{**values, **encoder})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return dataclasses.asdict(self)


# The pretraining model's own fields (not arch, method, encoder_kwargs), and their lower bounds (default: >= 0).
_MODEL_FIELDS = (
    "mask_ratio",
    "norm_pix_loss",
    "decoder_embed_dim",
    "decoder_depth",
    "decoder_num_heads",
    "norm_eps",
    "masker_depth",
    "masker_num_heads",
    "masker_mlp_ratio",
    "masker_norm_eps",
    "gauss_sigma",
    "gauss_weight",
    "kl_weight",
    "kl_batch_scale",
    "div_weight",
    "div_scale",
)
_FIELD_MIN = {
    "decoder_embed_dim": (1, True),
    "decoder_num_heads": (1, True),
    "masker_num_heads": (1, True),
    "masker_mlp_ratio": (0, False),
    "norm_eps": (0, False),
    "masker_norm_eps": (0, False),
    "gauss_sigma": (0, False),
    "div_scale": (0, False),
}


# timm arguments that must be >= 1 (the other numbers must be >= 0).
_POSITIVE_ENCODER_ARGS = ("in_chans", "embed_dim", "depth", "num_heads")


@lru_cache(maxsize=1)
def _encoder_types() -> dict[str, Any]:
    """The type annotations of timm ``VisionTransformer``'s arguments."""
    return {k: tp for k, tp in typing.get_type_hints(VisionTransformer.__init__).items() if k != "return"}


def _number(value: Any, kind: type) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return isinstance(value, int) if kind is int else math.isfinite(value)


def _check_encoder_value(key: str, value: Any, tp: Any) -> None:
    """A ``ValueError`` unless ``value`` fits the timm argument type ``tp``: numbers (finite, not negative; sizes and
    counts >= 1), flags, strings, choices (``Literal``) and sizes (an int or a pair); other types (layers) pass."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    union = origin in (typing.Union, types.UnionType)
    inner = [a for a in args if a is not type(None)]
    if origin is typing.Literal:
        ok, expected = value in args, f"one of {list(args)}"
    elif union and len(inner) == 1 and inner[0] in (int, float, bool):
        ok = value is None or (isinstance(value, bool) if inner[0] is bool else _number(value, inner[0]))
        expected = f"{inner[0].__name__} or null"
    elif union and int in inner and any(typing.get_origin(a) is tuple for a in inner):
        items = list(value) if isinstance(value, (list, tuple)) and len(value) == 2 else [value]
        ok, expected = all(_number(v, int) and v >= 1 for v in items), "an int >= 1 or a pair of them"
    elif tp is bool:
        ok, expected = isinstance(value, bool), "true or false"
    elif tp is str:
        ok, expected = isinstance(value, str), "a string"
    elif tp is float and key.endswith("_rate"):  # dropout probabilities: outside [0, 1) they fail in the first step
        ok, expected = _number(value, float) and 0 <= value < 1, "a probability in [0, 1)"
    elif tp in (int, float):
        low = 1 if key in _POSITIVE_ENCODER_ARGS else 0
        ok, expected = _number(value, tp) and value >= low, f"{'an int' if tp is int else 'a finite number'} >= {low}"
    else:
        return
    if not ok:
        raise ValueError(f"model argument {key}={value!r}: expected {expected}")


def check_encoder_kwargs(kwargs: dict[str, Any]) -> None:
    """A ``ValueError`` unless every key is a timm ``VisionTransformer`` argument (or one of ``timm.create_model``'s
    ``pretrained_cfg`` / ``pretrained_cfg_overlay``) with a value of its type.

    The one check of model arguments by name and type: ``model_kwargs.KEY=VALUE`` options, recipes,
    :class:`PretrainingConfig`, :func:`clmae.create_model` and the weights loaders all come through here. An unknown
    name gets the closest valid names; a pretraining-model field given where only an encoder is built is named as
    such. Values that only fail together (``embed_dim`` not divisible by ``num_heads``) are caught when the model is
    built (:func:`clmae.models.check_config`).
    """
    if not isinstance(kwargs, dict):
        raise ValueError(f"model arguments must be a dict of name: value, got {kwargs!r}")
    valid = [*encoder_arguments(), "pretrained_cfg", "pretrained_cfg_overlay"]
    unknown = [k for k in kwargs if k not in valid]
    pretraining = list(_MODEL_FIELDS)
    misplaced = [k for k in unknown if k in pretraining]
    if misplaced:
        raise ValueError(
            f"{', '.join(misplaced)} {'is an argument' if len(misplaced) == 1 else 'are arguments'} of the pretraining "
            "model (decoder, masking module, losses), not of the encoder that is built here; give only timm "
            "VisionTransformer arguments (e.g. depth, embed_dim, num_heads, img_size, drop_path_rate)"
        )
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), valid + pretraining, n=3)
            hints.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ValueError(
            f"unknown model argument {', '.join(hints)}. Model arguments are the pretraining model's "
            f"({', '.join(pretraining)}) and timm VisionTransformer's (e.g. depth, embed_dim, num_heads, img_size, "
            "drop_path_rate)"
        )
    types_ = _encoder_types()
    for key, value in kwargs.items():
        if key in types_:
            _check_encoder_value(key, value, types_[key])
        elif key == "pretrained_cfg" and not isinstance(value, (dict, str, type(None))):
            if not hasattr(value, "to_dict"):  # timm's PretrainedCfg
                raise ValueError(f"model argument pretrained_cfg={value!r}: expected a dict (timm's pretrained_cfg)")
        elif key == "pretrained_cfg_overlay" and not isinstance(value, (dict, type(None))):
            raise ValueError(f"model argument pretrained_cfg_overlay={value!r}: expected a dict")
