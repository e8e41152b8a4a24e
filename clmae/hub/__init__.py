"""Pretrained weights as files: the registry, pinned and verified downloads, loading, saving, pushing, converting."""

from .download import ChecksumError
from .load import (
    build_from_config,
    load_encoder_state,
    load_pretrained,
    load_pretraining,
    load_pretraining_model,
    read_weights,
    resolve,
    resolve_weight_or_explain,
)
from .push import push_to_hub
from .registry import UnknownWeightError, WeightEntry, get_weight, list_pretrained
from .save import save_pretrained
from .vitmae_save import export_vitmae, save_vitmae

__all__ = [
    "ChecksumError",
    "UnknownWeightError",
    "WeightEntry",
    "build_from_config",
    "export_vitmae",
    "get_weight",
    "list_pretrained",
    "load_encoder_state",
    "load_pretrained",
    "load_pretraining",
    "load_pretraining_model",
    "push_to_hub",
    "read_weights",
    "resolve",
    "resolve_weight_or_explain",
    "save_pretrained",
    "save_vitmae",
]
