"""YAML and JSON read with bounds: a limited nesting depth and number of values, and no YAML aliases, so that a
hostile or broken file (``[[[[...`` 100,000 deep, a "billion laughs" of nested aliases) is one clear error, not a
``RecursionError``, a hang or all memory."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

MAX_DEPTH = 100  # nesting of lists/mappings; clmae's own files use fewer than 10
MAX_NODES = 1_000_000  # values in one document; a recipe holds about a hundred
MAX_BYTES = 64 << 20  # a metadata file larger than this is no metadata file


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses aliases (``*name``) and documents nested deeper than :data:`MAX_DEPTH` or
    holding more than :data:`MAX_NODES` values, while it builds them."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.YAMLError(f"aliases (*{event.anchor}) are not accepted{event.start_mark}; write the values out")
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise yaml.YAMLError(f"more than {MAX_NODES:,} values")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.YAMLError(f"nested more than {MAX_DEPTH} levels deep{self.peek_event().start_mark}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> dict:
        # PyYAML keeps the last of two equal keys without a word; a recipe that sets a value twice is a mistake.
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    line = key_node.start_mark.line + 1
                    raise yaml.YAMLError(f"the key {key!r} appears twice (line {line}); keep one")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _depth_of(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in JSON text (strings skipped): checked before the recursive parser runs."""
    depth = deepest = 0
    in_string = escaped = False
    for c in text:
        if in_string:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_string = False
        elif c == '"':
            in_string = True
        elif c in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif c in "]}":
            depth -= 1
    return deepest


def parse_yaml(text: str, where: str) -> Any:
    """YAML ``text`` as Python values (safe types only), bounded (:data:`MAX_DEPTH`, :data:`MAX_NODES`, no aliases).

    Raises:
        ValueError: not valid YAML, or beyond a bound; the message starts with ``where`` (``recipe r.yaml``).
    """
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except yaml.YAMLError as e:
        text = " ".join(str(e).replace('in "<unicode string>", ', "").split())
        raise ValueError(f"cannot read {where}: {text}") from None
    except RecursionError:  # the parser itself, before the composer's bound: never leak a RecursionError
        raise ValueError(f"cannot read {where}: nested more than {MAX_DEPTH} levels deep") from None


def parse_json(text: str | bytes, where: str) -> Any:
    """JSON ``text`` as Python values, nested at most :data:`MAX_DEPTH` deep.

    Raises:
        ValueError: not valid JSON, or nested too deep; the message starts with ``where`` (``path/config.json``).
    """
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{where} is not UTF-8 text ({e})") from None
    if _depth_of(text) > MAX_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_DEPTH} levels deep; it is no metadata file clmae writes")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError(f"{where} is nested too deep") from None
    except ValueError as e:  # JSONDecodeError, and integers of thousands of digits
        raise ValueError(f"{where} is not valid JSON ({e})") from None


def read_json(path: str | Path, what: str = "") -> Any:
    """A JSON file, read with :func:`parse_json`'s bounds and at most :data:`MAX_BYTES` bytes.

    Args:
        path: the file.
        what: what it is, before its path in messages (``"manifest"``).

    Raises:
        FileNotFoundError, OSError: it cannot be read.
        ValueError: too large, not UTF-8, not valid JSON, or nested too deep; the message names the file.
    """
    where = f"{what} {path}".strip()
    with open(path, "rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:
        raise ValueError(f"{where} is larger than {MAX_BYTES >> 20} MiB; it is no metadata file")
    return parse_json(raw, where)


def check_string_keys(value: Any, where: str, prefix: str = "") -> None:
    """A ``ValueError`` naming the field when a mapping in ``value`` has a key that is not a string (YAML reads
    ``{1: 2}`` as an integer key, which no config field or model argument can be).

    Args:
        value: parsed YAML/JSON (bounded in depth by :func:`parse_yaml` / :func:`parse_json`).
        where: the file or option, for the message.
        prefix: the dotted field path of ``value``.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                field = f"field {prefix} has" if prefix else "it has"
                raise ValueError(f"{where}: {field} the key {key!r}, which is not a string; keys must be names")
            check_string_keys(item, where, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_string_keys(item, where, f"{prefix}[{i}]")
