"""Imports that moved between the library versions clmae supports (timm>=1.0, torch>=2.1)."""

try:
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay
except ImportError:  # timm < 1.0.12 defines them in optim_factory only
    from timm.optim.optim_factory import param_groups_layer_decay, param_groups_weight_decay

__all__ = ["param_groups_layer_decay", "param_groups_weight_decay"]
