"""How a state dict differs from a model's, checked before a strict ``load_state_dict`` so that the error names the
keys, shapes or dtypes that differ."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def state_differences(
    model: nn.Module, state: Mapping[str, torch.Tensor], optional: tuple[str, ...] = ()
) -> tuple[list[str], list[str], list[str]]:
    """How ``state`` differs from ``model``'s state dict, before a strict ``load_state_dict``.

    Args:
        model: the module the weights are for.
        state: the weights.
        optional: key prefixes that may be missing (e.g. a new classifier head).

    Returns:
        ``(missing, unexpected, shapes)``: keys of the model that ``state`` lacks (except ``optional`` ones), keys of
        ``state`` the model does not have, and ``"KEY (state shape) vs (model shape)"`` for shapes that differ; all
        empty when a strict load will succeed.
    """
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    missing = [k for k in expected if k not in got and not (optional and k.startswith(optional))]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k} {got[k]} vs {expected[k]}" for k in got if k in expected and got[k] != expected[k]]
    return missing, unexpected, shapes


def check_dtypes(model: nn.Module, state: Mapping[str, torch.Tensor], where: str) -> None:
    """A ``ValueError`` naming the first tensor of ``state`` that holds integers (``int8``, quantized, ``bool``)
    where ``model`` has floating-point values: ``load_state_dict`` would cast it to float without a word, and the
    numbers would not be the weights (a quantized tensor needs its scale)."""
    expected = model.state_dict()
    for key, value in state.items():
        target = expected.get(key)
        if target is not None and target.is_floating_point() and not value.is_floating_point():
            raise ValueError(
                f"weights in {where}: tensor {key} is stored as {str(value.dtype).replace('torch.', '')}, the model's "
                f"is {str(target.dtype).replace('torch.', '')}: integer or quantized weights cannot be loaded exactly; "
                "dequantize them to floating point first"
            )


def check_state(
    model: nn.Module, state: Mapping[str, torch.Tensor], where: str, optional: tuple = (), fix: str | None = None
) -> None:
    """Same keys and shapes, or a ``ValueError`` naming the differences.

    Args:
        model: the module the weights are for.
        state: the weights.
        where: their origin, for the message.
        optional: key prefixes of ``model`` that ``state`` may lack (a new classifier head).
        fix: what to do about a mismatch (default: the weights and the config come from different models).
    """
    check_dtypes(model, state, where)
    missing, unexpected, shapes = state_differences(model, state, tuple(optional))
    if missing or unexpected or shapes:
        raise ValueError(
            f"weights in {where} do not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}, shapes "
            f"(weights vs model) {shapes[:3]}; " + (fix or "the config and the weights come from different models")
        )
