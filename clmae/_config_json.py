"""The reader of a weights folder's ``config.json`` (timm's format with clmae's additions), checked field by field."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._files import CONFIG_NAME
from ._parse import read_json


def read_config(path: str | Path) -> dict[str, Any]:
    """A weights folder's ``config.json`` (the file or its folder), checked for the fields a timm config must have."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: a weights folder needs config.json (timm format) next to model.safetensors; "
            "write one with clmae.save_pretrained()"
        )
    try:
        cfg = read_json(path)
    except ValueError as e:
        raise ValueError(f"{e}; export the folder again with clmae.save_pretrained()") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(cfg).__name__}")
    missing = [k for k in ("architecture", "pretrained_cfg") if k not in cfg]
    if missing:
        raise ValueError(
            f"{path} is not a timm model config: it lacks {', '.join(missing)}. Expected keys: architecture, "
            "num_classes, model_args, pretrained_cfg (see weights/README.md)"
        )
    if not isinstance(cfg.get("model_args", {}), dict) or not isinstance(cfg["pretrained_cfg"], dict):
        raise ValueError(f"{path}: model_args and pretrained_cfg must be JSON objects")
    check_config_fields(cfg, path)
    return cfg


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _size(value: Any) -> bool:
    """An image or patch size as timm takes it: an int, or [height, width]."""
    return _positive_int(value) or (
        isinstance(value, (list, tuple)) and len(value) == 2 and all(_positive_int(v) for v in value)
    )


# (field, check, what it must be) for a timm/clmae config.json; a field that is absent is not checked here.
_CONFIG_FIELDS: tuple[tuple[tuple[str, ...], Callable[[Any], bool], str], ...] = (
    (("architecture",), lambda v: isinstance(v, str) and bool(v), "a timm architecture name (a string)"),
    (("num_classes",), lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    (("num_features",), _positive_int, "a positive integer"),
    (("global_pool",), lambda v: isinstance(v, str), "a string (token, avg, ...)"),
    (("model_args", "img_size"), _size, "a positive integer or [height, width]"),
    (("model_args", "patch_size"), _size, "a positive integer or [height, width]"),
    (("model_args", "in_chans"), _positive_int, "a positive integer"),
    (("model_args", "embed_dim"), _positive_int, "a positive integer"),
    (("model_args", "depth"), _positive_int, "a positive integer"),
    (("model_args", "num_heads"), _positive_int, "a positive integer"),
    (("model_args", "mlp_ratio"), lambda v: _number(v) and v > 0, "a positive number"),
    (
        ("pretrained_cfg", "input_size"),
        lambda v: isinstance(v, list) and len(v) == 3 and all(_positive_int(x) for x in v),
        "[channels, height, width] of positive integers",
    ),
    (("pretrained_cfg", "mean"), lambda v: isinstance(v, list) and all(_number(x) for x in v), "a list of numbers"),
    (
        ("pretrained_cfg", "std"),
        lambda v: isinstance(v, list) and all(_number(x) and x > 0 for x in v),
        "a list of positive numbers",
    ),
    (("pretrained_cfg", "crop_pct"), lambda v: _number(v) and v > 0, "a positive number"),
    (("pretrained_cfg", "interpolation"), lambda v: isinstance(v, str), "a string (bicubic, bilinear, ...)"),
    (("clmae",), lambda v: v is None or isinstance(v, dict), "a JSON object"),
    (("clmae", "arch"), lambda v: v is None or isinstance(v, str), "a clmae architecture name (a string)"),
    (("clmae", "method"), lambda v: v is None or isinstance(v, str), "a string (clmae or mae)"),
    (("clmae", "config"), lambda v: v is None or isinstance(v, dict), "a JSON object"),
    (("clmae", "norm_eps"), lambda v: v is None or (_number(v) and v > 0), "a positive number"),
    (("clmae", "datasets"), lambda v: isinstance(v, list), "a list"),
    (("clmae", "metrics"), lambda v: isinstance(v, dict), "a JSON object"),
)


def check_config_fields(cfg: Mapping[str, Any], path: str | Path) -> None:
    """A ``ValueError`` naming the file and the first field of a timm/clmae ``config.json`` of the wrong type or
    range (``"architecture": 123``, ``"img_size": [28]``, ``"clmae": [1, 2]``); absent fields pass."""
    for where, check, expected in _CONFIG_FIELDS:
        value: Any = cfg
        for part in where:
            if not isinstance(value, Mapping) or part not in value:
                break
            value = value[part]
        else:
            if value is None and where[0] == "pretrained_cfg":  # timm leaves some of them null: its defaults apply
                continue
            if not check(value):
                raise ValueError(
                    f"{path}: field {'.'.join(where)} must be {expected}, got {json.dumps(value)[:80]}; restore the "
                    "original config.json or export the folder again with clmae.save_pretrained()"
                )
