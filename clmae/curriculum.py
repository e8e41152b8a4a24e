"""The curriculum factor lambda_cl of CL-MAE: +1 (partner) -> 0 (neutral) -> -1 (adversary), linear over training."""

from __future__ import annotations


def curriculum_factor(epoch: int, epochs: int) -> float:
    """lambda_cl for 0-based ``epoch`` of ``epochs``; constant within an epoch.

    ``1 - 2e/E`` for ``e < E/2``, else ``1 - 2(e+1)/E`` (authors' released code). The schedule is antisymmetric,
    runs from +1 at the first epoch to -1 at the last, and skips 0 when E is even (for odd E the middle epoch gets
    +1/E). For E = 200: epochs 0, 50, 99,
    100, 149, 199 give 1.0, 0.5, 0.01, -0.01, -0.5, -1.0.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch must be in [0, {epochs}), got {epoch}")
    if epoch < epochs / 2:
        return 1.0 - 2.0 * epoch / epochs
    return 1.0 - 2.0 * (epoch + 1) / epochs


def curriculum_phase(lam: float) -> str:
    """Name of the phase a factor belongs to: ``"partner"`` (> 0), ``"neutral"`` (0) or ``"adversary"`` (< 0)."""
    return "partner" if lam > 0 else "adversary" if lam < 0 else "neutral"
