"""The pretraining model's one configuration: :class:`PretrainingConfig`.

``create_pretraining_model``, :class:`~clmae.models.CLMAE`, ``save_pretrained``, ``load_pretraining_model``,
``clmae convert`` and the trainer all read and write this dataclass; ``config.json`` stores it as
``clmae.config`` (its :meth:`PretrainingConfig.to_dict`).
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any

from timm.models.vision_transformer import VisionTransformer

from . import losses
from .masking import check_mask_ratio

METHODS = ("clmae", "mae")
METHOD_TITLES = {"clmae": "CL-MAE", "mae": "MAE"}


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
        check_method(self.method)
        check_mask_ratio(self.mask_ratio)
        check_encoder_kwargs(self.encoder_kwargs)

    @classmethod
    def fields(cls) -> list[str]:
        """The field names, ``encoder_kwargs`` last."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_kwargs(cls, arch: str, method: str = "clmae", **kwargs: Any) -> PretrainingConfig:
        """Split flat keyword arguments: this dataclass's fields, the rest are encoder arguments (checked)."""
        own = set(cls.fields()) - {"arch", "method", "encoder_kwargs"}
        encoder = {k: v for k, v in kwargs.items() if k not in own}
        return cls(arch, method, **{k: v for k, v in kwargs.items() if k in own}, encoder_kwargs=encoder)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PretrainingConfig:
        """Read :meth:`to_dict`'s layout, or the flat one of clmae 0.1.0 weights (``name`` and encoder arguments
        beside the fields)."""
        values = dict(values)
        if "arch" not in values and "name" in values:  # clmae 0.1.0 layout
            values["arch"] = values.pop("name")
        encoder = dict(values.pop("encoder_kwargs", None) or {})
        arch, method = values.pop("arch"), values.pop("method", "clmae")
        cfg = cls.from_kwargs(arch, method, **values)
        return dataclasses.replace(cfg, encoder_kwargs={**cfg.encoder_kwargs, **encoder})

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reads it back."""
        return dataclasses.asdict(self)


def check_encoder_kwargs(kwargs: dict[str, Any]) -> None:
    """A ``ValueError`` naming the closest valid names if a key is neither a timm ``VisionTransformer`` argument nor
    one of ``timm.create_model``'s ``pretrained_cfg`` / ``pretrained_cfg_overlay``."""
    valid = [*encoder_arguments(), "pretrained_cfg", "pretrained_cfg_overlay"]
    unknown = [k for k in kwargs if k not in valid]
    if not unknown:
        return
    pretraining = [f for f in PretrainingConfig.fields() if f not in ("arch", "method", "encoder_kwargs")]
    hints = []
    for key in unknown:
        close = difflib.get_close_matches(key, valid + pretraining, n=3)
        hints.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
    raise ValueError(
        f"unknown model argument {', '.join(hints)}. Model arguments are the pretraining model's "
        f"({', '.join(pretraining)}) and timm VisionTransformer's (e.g. depth, embed_dim, num_heads, img_size, "
        "drop_path_rate)"
    )
