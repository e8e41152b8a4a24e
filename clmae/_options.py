"""Config fields declared once: :func:`option` gives a dataclass field its default, its documentation and its rules
(bounds, finiteness, choices); :func:`check_fields` enforces the rules and :func:`attributes_doc` writes the class's
docstring from them. Every config class of clmae (training, evaluation) declares its fields this way."""

from __future__ import annotations

import dataclasses
import math
import textwrap
from typing import Any


def option(
    default: Any,
    doc: str,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
    multiple_of: int | None = None,
    finite: bool = False,
    choices: tuple[str, ...] | None = None,
    why: str | None = None,
    resumable: bool = False,
    none: str | None = None,
) -> Any:
    """A config field, declared once: its default, what it does, and the rules that :func:`check_fields`, resuming
    (:func:`clmae.train.config.resumable_fields`) and the docstring (:func:`attributes_doc`) read from it.

    Args:
        default: the default; a ``dict`` default is copied per instance.
        doc: one sentence or more for the docstring.
        at_least: lowest allowed value (``None`` values always pass).
        above: the value must be greater than this.
        at_most: highest allowed value.
        multiple_of: the value must be a multiple of this (2: even).
        finite: refuse ``nan`` and ``inf``.
        choices: the allowed strings.
        why: the reason for the rule, for error messages ("BatchNorm needs it").
        resumable: a resumed run may change it (it does not change what is learned, or only how a batch is split).
        none: what ``None`` means, for error messages ("the whole data set").
    """
    meta = {
        "doc": doc,
        "at_least": at_least,
        "above": above,
        "at_most": at_most,
        "multiple_of": multiple_of,
        "finite": finite,
        "choices": choices,
        "why": why,
        "resumable": resumable,
        "none": none,
    }
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _number(x: float) -> str:
    return str(int(x)) if x == int(x) else str(x)


def _range(rules: dict[str, Any]) -> str | None:
    """``">= 1"``, ``"> 0"``, ``"<= 1"``, ``"in (0, 1]"``, ``"in [0, 1]"``; ``None`` without bounds."""
    low, above, high = rules["at_least"], rules["above"], rules["at_most"]
    if high is not None and (low is not None or above is not None):
        left = f"[{_number(low)}" if low is not None else f"({_number(above)}"
        return f"in {left}, {_number(high)}]"
    if low is not None:
        return f">= {_number(low)}"
    if above is not None:
        return f"> {_number(above)}"
    return None if high is None else f"<= {_number(high)}"


def check_field(f: dataclasses.Field, value: Any) -> None:
    """A ``ValueError`` naming field ``f`` when ``value`` breaks a rule declared with :func:`option`."""
    rules = f.metadata
    if value is None or "doc" not in rules:
        return
    why = f" ({rules['why']})" if rules.get("why") else ""
    if rules["finite"] and not math.isfinite(value):
        raise ValueError(f"{f.name} must be a finite number, got {value}")
    low, above, high = rules.get("at_least"), rules.get("above"), rules.get("at_most")
    if (
        (low is not None and value < low)
        or (above is not None and value <= above)
        or (high is not None and value > high)
    ):
        none = f" (or none for {rules['none']})" if rules["none"] else ""
        raise ValueError(f"{f.name} must be {_range(rules)}{none}{why}, got {value}")
    step = rules.get("multiple_of")
    if step is not None and value % step:
        raise ValueError(f"{f.name} must be {'even' if step == 2 else f'a multiple of {step}'}{why}, got {value}")
    if rules["choices"] is not None and value not in rules["choices"]:
        raise ValueError(f"{f.name} must be one of {', '.join(rules['choices'])}, got {value!r}")


def check_fields(config: Any) -> None:
    """:func:`check_field` for every field of the dataclass instance ``config``, in the order they are declared."""
    for f in dataclasses.fields(config):
        check_field(f, getattr(config, f.name))


def attributes_doc(cls: type) -> str:
    """``cls``'s docstring followed by an ``Attributes:`` section made of its fields' ``doc`` (:func:`option`)."""
    lines = [(cls.__doc__ or "").rstrip(), "", "Attributes:"]
    for f in dataclasses.fields(cls):
        lines += textwrap.wrap(
            f"{f.name}: {f.metadata['doc']}", 110, initial_indent="    ", subsequent_indent="        "
        )
    return "\n".join(lines) + "\n"
