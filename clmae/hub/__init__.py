"""Pretrained weights as files: the registry, pinned and verified downloads, one reading of weight specs, loading,
saving, pushing, converting."""

from .download import ChecksumError
from .load import (
    EncoderWeights,
    build_from_config,
    load_encoder_state,
    load_pretrained,
    load_pretraining,
    load_pretraining_model,
    read_encoder,
    read_weights,
)
from .push import push_to_hub
from .registry import UnknownWeightError, WeightEntry, get_weight, list_pretrained
from .resolve import PRETRAINING_PREFIX, Source, WeightSpec, parse_spec, resolve, resolve_weight_or_explain
from .save import save_pretrained
from .vitmae_save import export_vitmae, save_vitmae

__all__ = [
    "PRETRAINING_PREFIX",
    "ChecksumError",
    "EncoderWeights",
    "Source",
    "UnknownWeightError",
    "WeightEntry",
    "WeightSpec",
    "build_from_config",
    "export_vitmae",
    "get_weight",
    "list_pretrained",
    "load_encoder_state",
    "load_pretrained",
    "load_pretraining",
    "load_pretraining_model",
    "parse_spec",
    "push_to_hub",
    "read_encoder",
    "read_weights",
    "resolve",
    "resolve_weight_or_explain",
    "save_pretrained",
    "save_vitmae",
]
