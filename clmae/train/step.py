"""One CL-MAE training iteration: an MAE update, then a masking-module update, on the same batch.

Two AdamW optimizers with the same hyper-parameters (one per module). The reference code uses one optimizer over
both; on PyTorch 1.x its ``zero_grad()`` left zero gradients on the frozen half, which then got a momentum-only
AdamW step every iteration. clmae does not reproduce that side effect.

Gradient accumulation: pass the batch as a list of micro-batches. The MAE accumulates its gradient over all of them
and takes one update; then the masking module accumulates over the same micro-batches (through the just-updated
encoder and decoder) and takes one update. The masking module's KL and diversity terms are statistics of each
micro-batch, exactly as they are statistics of each GPU's batch under data parallelism (docs/method.md §4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import nn

from .._compat import param_groups_weight_decay
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


def compile_in_place(model: CLMAE, mode: str | None = None, backend: str = "inductor") -> CLMAE:
    """``torch.compile`` the encoder blocks, the decoder and the masking module in place: parameter names (and so
    checkpoints) stay those of the plain model. ``mode`` is ``torch.compile``'s (``"reduce-overhead"`` replays each
    compiled region as a CUDA graph: fewer kernel launches, which is what limits small models); ``backend`` too
    (``"eager"`` captures the graphs without generating code: a quick check that the model compiles)."""
    for module in (model.encoder.blocks, model.decoder, model.masker):
        if module is not None:
            module.compile(mode=mode, backend=backend)
    return model


def autocast_for(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (no gradient scaler needed); full precision elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(
    model: CLMAE,
    images: torch.Tensor | Sequence[torch.Tensor],
    lam: float,
    mae_optimizer: torch.optim.Optimizer,
    masker_optimizer: torch.optim.Optimizer | None = None,
    *,
    amp: bool = True,
    generator: torch.Generator | Sequence[torch.Generator | None] | None = None,
    ddp: nn.Module | None = None,
    sync_masker_grads: Callable[[nn.Module], None] | None = None,
    return_masks: bool = False,
) -> dict[str, torch.Tensor]:
    """One full iteration (docs/method.md §4): MAE update, then masking-module update, on ``images``.

    No value is copied to the host: the returned scalars are detached device tensors, to ``.item()`` only when
    logging.

    Args:
        model: the pretraining model (in train mode).
        images: ``[N, C, H, W]`` on the model's device, or a list of such micro-batches whose gradients are
            accumulated into one update of each module (each micro-batch's loss is divided by their number).
        lam: curriculum factor for this epoch (:func:`clmae.curriculum_factor`); unused for MAE.
        mae_optimizer: optimizer over encoder + decoder.
        masker_optimizer: optimizer over the masking module (required for CL-MAE).
        amp: bf16 autocast on CUDA.
        generator: random masks for ``method="mae"``: one generator, or one per micro-batch.
        ddp: a ``DistributedDataParallel`` wrapper whose forward is ``model.forward_mae`` (see
            :func:`clmae.train.distributed.wrap_ddp`); it averages the MAE gradients across processes.
        sync_masker_grads: called with the masking module after its backward, to average its gradients across
            processes (see :func:`clmae.train.distributed.all_reduce_grads`).
        return_masks: also return ``mask`` (MAE step) and ``scores`` (masker step) of the last micro-batch, and
            ``masks``, the MAE step's masks of every micro-batch, detached.

    Returns:
        ``mae_loss``; for CL-MAE also ``masker_loss``, ``rec``, ``gauss``, ``kl``, ``div`` and ``score_mean``
        (means over the micro-batches).
    """
    if model.masker is not None and masker_optimizer is None:
        raise ValueError("a CL-MAE model needs masker_optimizer (see clmae.train.build_optimizers)")
    micro = [images] if isinstance(images, torch.Tensor) else list(images)
    if not micro:
        raise ValueError("images must be a tensor or a non-empty list of micro-batches")
    gens = list(generator) if isinstance(generator, Sequence) else [generator] * len(micro)
    if len(gens) != len(micro):
        raise ValueError(f"got {len(gens)} generators for {len(micro)} micro-batches; pass one per micro-batch")
    ctx = autocast_for(micro[0].device, amp)
    n = len(micro)
    forward_mae = model.forward_mae if ddp is None else ddp

    # 1) MAE step: masking module frozen (it runs without a graph), masks from its top-K scores.
    mae_optimizer.zero_grad(set_to_none=True)
    mae_loss, masks = 0.0, []
    for i, (x, g) in enumerate(zip(micro, gens)):
        # Under DDP, only the last micro-batch's backward all-reduces the accumulated gradients.
        sync = contextlib.nullcontext() if ddp is None or i == n - 1 else ddp.no_sync()
        with sync:
            with ctx:
                out = forward_mae(x, g)
            (out["loss"] / n).backward()
        mae_loss = mae_loss + out["loss"].detach() / n
        if return_masks:
            masks.append(out["mask"].detach())
    mae_optimizer.step()
    stats = {"mae_loss": mae_loss}
    if return_masks:
        stats["mask"], stats["masks"] = masks[-1], masks

    # 2) Masking-module step on the same micro-batches, through the just-updated, frozen encoder and decoder.
    if model.masker is not None:
        masker_optimizer.zero_grad(set_to_none=True)
        sums: dict[str, torch.Tensor] = {}
        for x in micro:
            with ctx:
                mout = model.forward_masker(x, lam)
            (mout["loss"] / n).backward()
            mout["masker_loss"], mout["score_mean"] = mout["loss"], mout["scores"].mean()
            for k in ("masker_loss", "rec", "gauss", "kl", "div", "score_mean"):
                sums[k] = sums.get(k, 0.0) + mout[k].detach().float() / n
        if sync_masker_grads is not None:
            sync_masker_grads(model.masker)
        masker_optimizer.step()
        stats.update(sums)
        if return_masks:
            stats["scores"] = mout["scores"].detach()
    return stats
