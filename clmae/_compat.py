"""Imports that moved between the library versions clmae supports (timm>=1.0, torch>=2.1)."""

import torch

try:
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay
except ImportError:  # timm < 1.0.12 defines them in optim_factory only
    from timm.optim.optim_factory import param_groups_layer_decay, param_groups_weight_decay


def autocast_enabled(device: torch.device) -> bool:
    """Whether autocast is on for ``device``'s type."""
    try:
        return torch.is_autocast_enabled(device.type)
    except TypeError:  # torch < 2.4: no device argument
        return torch.is_autocast_enabled() if device.type == "cuda" else torch.is_autocast_cpu_enabled()


__all__ = ["autocast_enabled", "param_groups_layer_decay", "param_groups_weight_decay"]
