"""``key=value`` options for typed dataclass configs: the one grammar of ``clmae train`` and ``clmae eval``.

* ``key=value`` sets a field of the command's config; the value is converted to the field's type (``epochs=1e3`` is
  the integer 1000, ``amp=off`` is ``False``, ``lr=none`` clears an optional field, ``betas=0.9,0.95`` is a tuple);
  numbers must be finite (``nan`` and ``inf`` are refused: no option means anything with them).
* ``model_kwargs.KEY=VALUE`` (short form ``model.KEY=VALUE``) is an argument of the model (a timm
  ``VisionTransformer`` argument or a pretraining-model field); its type is read off the value (a YAML scalar, with
  ``1e-3`` read as a number). The command checks the names.
* Unknown keys are errors that name the closest valid keys.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ._parse import check_string_keys, parse_yaml

MODEL_PREFIXES = ("model_kwargs.", "model.")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def parse_pairs(items: Iterable[str]) -> dict[str, str]:
    """``["epochs=10", "model_kwargs.depth=2"]`` -> ``{"epochs": "10", "model_kwargs.depth": "2"}`` (``-`` in a key
    reads as ``_``)."""
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"options are key=value pairs, got {item!r} (e.g. epochs=100, model_kwargs.depth=4)")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (a command-line string, or a value from YAML/JSON) to the field type ``tp``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    expected = getattr(tp, "__name__", str(tp))
    if origin in (typing.Union, types.UnionType):  # X | None
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", "")):
            return None
        return coerce(value, next(a for a in args if a is not type(None)), key)
    if origin is dict and isinstance(value, str):  # outside the try: a YAML error names its own problem
        value = parse_yaml(value, f"option {key}")
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in _TRUE + _FALSE:
                raise ValueError
            return text in _TRUE
        if tp is int:
            number = float(value) if isinstance(value, str) else value  # "4096", "1e3"
            if isinstance(number, bool) or number != int(number):
                raise ValueError
            return int(number)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):  # nan, inf: no option of clmae means anything with them
                expected = "a finite number"
                raise ValueError
            return number
        if tp is str:
            return str(value)
        if origin is tuple:
            items = value.strip("()[] ").split(",") if isinstance(value, str) else value
            return tuple(coerce(v, a, key) for v, a in zip(items, args, strict=True))
        if origin is dict:
            if not isinstance(value, dict):
                raise ValueError
            mapping = dict(value)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"option {key}={value!r}: expected {expected}") from None
    if origin is dict:
        check_string_keys(mapping, f"option {key}")  # after the try: its message names the key at fault
        return mapping
    raise TypeError(f"unsupported config type {tp} for {key!r}")


def model_value(value: Any) -> Any:
    """A model argument's value: a YAML scalar (``4``, ``0.1``, ``true``, ``gelu``), ``1e-3`` read as a float and
    ``1e3`` as the integer 1000 (as ``key=value`` options read it). The model checks names, types and values."""
    if not isinstance(value, str):
        return value
    parsed = parse_yaml(value, "a model argument")
    if isinstance(parsed, str):
        try:
            number = float(parsed)
        except ValueError:
            return parsed
        integral = math.isfinite(number) and number == int(number) and "." not in parsed
        return int(number) if integral else number
    return parsed


def split_options(
    options: Mapping[str, Any], configs: Sequence[type], command: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Typed field values for each dataclass in ``configs`` (a key goes to the first that has it), and the model
    arguments.

    Args:
        options: ``{key: value}``; string values are converted to the field types.
        configs: dataclass types, e.g. ``[CommonConfig, KnnConfig]``.
        command: the command's name, for error messages.

    Returns:
        ``(values per config, model arguments)``.

    Raises:
        ValueError: an unknown key (with the closest valid ones) or a value of the wrong type.
    """
    values: list[dict[str, Any]] = [{} for _ in configs]
    model: dict[str, Any] = {}
    hints = [typing.get_type_hints(cls) for cls in configs]
    for key, value in options.items():
        prefix = next((p for p in MODEL_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            model[key[len(prefix) :]] = model_value(value)
            continue
        for i, types_ in enumerate(hints):
            if key in types_:
                values[i][key] = coerce(value, types_[key], key)
                break
        else:
            valid = [f.name for cls in configs for f in dataclasses.fields(cls)]
            close = difflib.get_close_matches(key, valid, n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ValueError(
                f"unknown option {key!r} for `{command}`.{hint} Valid options: {', '.join(valid)}, and "
                "model_kwargs.KEY=VALUE for model arguments"
            )
    return values, model
