"""The LayerNorm epsilon of a built encoder or decoder: timm's and MAE's is 1e-6, ``transformers`` ViTMAE's 1e-12.

timm's ``VisionTransformer`` takes no epsilon argument (its ``norm_layer`` is a class, which ``config.json`` cannot
hold), so a model built from a config gets its epsilon set afterwards, on every LayerNorm it has.
"""

from __future__ import annotations

from torch import nn

TIMM_NORM_EPS = 1e-6


def set_norm_eps(module: nn.Module, eps: float) -> nn.Module:
    """Set ``eps`` on every ``nn.LayerNorm`` inside ``module`` (timm's ``LayerNorm`` reads it at each call).

    Returns:
        ``module``.
    """
    for m in module.modules():
        if isinstance(m, nn.LayerNorm):
            m.eps = float(eps)
    return module


def norm_eps(module: nn.Module) -> float | None:
    """The epsilon shared by every ``nn.LayerNorm`` inside ``module``; ``None`` if it has none.

    Raises:
        ValueError: the LayerNorms disagree (such a model has no single epsilon to record).
    """
    found = {m.eps for m in module.modules() if isinstance(m, nn.LayerNorm)}
    if len(found) > 1:
        raise ValueError(f"the model's LayerNorms use different epsilons {sorted(found)}; expected one")
    return found.pop() if found else None
