"""One CL-MAE training iteration: an MAE update, then a masking-module update, on the same batch.

Two AdamW optimizers with the same hyper-parameters (one per module). The reference code uses one optimizer over
both; on PyTorch 1.x its ``zero_grad()`` left zero gradients on the frozen half, which then got a momentum-only
AdamW step every iteration. clmae does not reproduce that side effect.
"""

from __future__ import annotations

import contextlib

import torch
from timm.optim import param_groups_weight_decay
from torch import nn

from ..models.pretrainer import CLMAE


def _adamw(module: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    # timm's grouping: weight decay on >= 2-D weights, none on biases and norm parameters (as MAE's add_weight_decay).
    groups = param_groups_weight_decay(module, weight_decay)
    on_cuda = any(p.is_cuda for g in groups for p in g["params"])
    return torch.optim.AdamW(groups, lr=lr, betas=betas, **({"fused": True} if on_cuda else {}))


def build_optimizers(
    model: CLMAE, lr: float, weight_decay: float = 0.05, betas: tuple[float, float] = (0.9, 0.95)
) -> tuple[torch.optim.AdamW, torch.optim.AdamW | None]:
    """AdamW for the MAE (encoder + decoder) and, for CL-MAE, a second one for the masking module.

    Build after moving the model to its device (fused AdamW is used on CUDA).

    Args:
        model: the pretraining model.
        lr: learning rate (the trainer scales it: base_lr * effective_batch / 256).
        weight_decay: on weights of two or more dimensions (reference 0.05); 0 on biases and norms.
        betas: AdamW betas (reference (0.9, 0.95)).

    Returns:
        ``(mae_optimizer, masker_optimizer)``; the second is ``None`` for ``method="mae"``.
    """
    mae = _adamw(nn.ModuleList([model.encoder, model.decoder]), lr, weight_decay, betas)
    masker = None if model.masker is None else _adamw(model.masker, lr, weight_decay, betas)
    return mae, masker


def autocast_for(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (no gradient scaler needed); full precision elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model: CLMAE,
    images: torch.Tensor,
    lam: float,
    mae_optimizer: torch.optim.Optimizer,
    masker_optimizer: torch.optim.Optimizer | None = None,
    *,
    amp: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """One full iteration (method.md section 4): MAE update, then masking-module update, on ``images``.

    No value is copied to the host: the returned scalars are detached device tensors, to ``.item()`` only when
    logging.

    Args:
        model: the pretraining model (in train mode).
        images: ``[N, C, H, W]`` on the model's device.
        lam: curriculum factor for this epoch (:func:`clmae.curriculum_factor`); unused for MAE.
        mae_optimizer: optimizer over encoder + decoder.
        masker_optimizer: optimizer over the masking module (required for CL-MAE).
        amp: bf16 autocast on CUDA.
        generator: random masks for ``method="mae"``.

    Returns:
        ``mae_loss``; for CL-MAE also ``masker_loss``, ``rec``, ``gauss``, ``kl``, ``div`` and ``score_mean``.
    """
    if model.masker is not None and masker_optimizer is None:
        raise ValueError("a CL-MAE model needs masker_optimizer (see clmae.train.build_optimizers)")
    ctx = autocast_for(images.device, amp)

    # 1) MAE step: masking module frozen (it runs without a graph), masks from its top-K scores.
    mae_optimizer.zero_grad(set_to_none=True)
    with ctx:
        out = model.forward_mae(images, generator)
    out["loss"].backward()
    mae_optimizer.step()
    stats = {"mae_loss": out["loss"].detach()}

    # 2) Masking-module step on the same batch, through the just-updated, frozen encoder and decoder.
    if model.masker is not None:
        masker_optimizer.zero_grad(set_to_none=True)
        with ctx:
            mout = model.forward_masker(images, lam)
        mout["loss"].backward()
        masker_optimizer.step()
        stats["masker_loss"] = mout["loss"].detach()
        stats.update({k: mout[k].detach() for k in ("rec", "gauss", "kl", "div")})
        stats["score_mean"] = mout["scores"].detach().mean()
    return stats
