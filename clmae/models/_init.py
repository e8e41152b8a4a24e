"""MAE's weight initialisation, shared by the encoder, the decoder and the masking module."""

from torch import nn


def init_linear_and_norm(module: nn.Module) -> None:
    """MAE's init of every sub-module: ``nn.Linear`` xavier-uniform, zero bias; ``nn.LayerNorm`` weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
