"""The linear probe's parts against MAE's formulas: LARS step, warm-up + cosine schedule, BatchNorm + linear head."""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from clmae.eval import FinetuneConfig, LinearProbeConfig, finetune, linear, resolve_model
from clmae.eval.linear import LinearHead, lars


def _mae_lr(e: float, lr: float, warmup: float, epochs: float, min_lr: float = 0.0) -> float:
    """MAE's util/lr_sched.py at fractional epoch ``e``: lr * e / warmup, then a half-cycle cosine to min_lr."""
    if e < warmup:
        return lr * e / warmup
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * (e - warmup) / (epochs - warmup)))


SEEN: list[list[tuple[float, float]]] = []  # every step's (rate, lr_scale) of each parameter group


class RecordingSGD(torch.optim.SGD):
    def step(self, closure=None):
        SEEN.append([(g["lr"], g.get("lr_scale", 1.0)) for g in self.param_groups])
        return super().step(closure)


def test_linear_probe_follows_mae_schedule_every_iteration(monkeypatch):
    SEEN.clear()
    monkeypatch.setattr(linear, "lars", lambda head, lr, momentum, wd: RecordingSGD(head.parameters(), lr=lr))
    cfg = LinearProbeConfig(epochs=3, warmup_epochs=1, batch_size=8, base_lr=25.6, min_lr=0.1, mode="cached")
    x, y = torch.randn(32, 4), torch.arange(32) % 2
    linear.linear_probe_cached(x, y, x, y, 2, cfg)
    expected = [_mae_lr(epoch + step / 4, 0.8, 1, 3, 0.1) for epoch in range(3) for step in range(4)]
    assert len(SEEN) == 12  # 32 / 8 = 4 iterations per epoch
    for (got,), want in zip(SEEN, expected, strict=True):
        assert math.isclose(got[0], want, rel_tol=1e-12, abs_tol=1e-15), (got, want)


def test_finetune_scales_the_schedule_per_layer(monkeypatch):
    class RecordingAdamW(torch.optim.AdamW):
        def step(self, closure=None):
            SEEN.append([(g["lr"], g["lr_scale"]) for g in self.param_groups])
            return super().step(closure)

    SEEN.clear()
    monkeypatch.setattr(torch.optim, "AdamW", RecordingAdamW)
    model = resolve_model("vit_tiny_patch4_28", overrides={"embed_dim": 32, "depth": 2, "num_heads": 2})
    images = TensorDataset(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]))
    cfg = FinetuneConfig(epochs=2, warmup_epochs=1, batch_size=2, base_lr=0.128, min_lr=1e-4, layer_decay=0.5)
    cfg.mixup = cfg.cutmix = 0.0
    finetune(model, images, images, 2, cfg)
    assert len(SEEN) == 4  # 2 iterations per epoch
    for i, groups in enumerate(SEEN):
        want = _mae_lr(i / 2, 0.128 * 2 / 256, 1, 2, 1e-4)
        for lr, scale in groups:
            assert math.isclose(lr, want * scale, rel_tol=1e-12, abs_tol=1e-18), (i, lr, want, scale)
    # timm's layer decay for depth 2: scales 0.5 ** (3 - layer id), from the embeddings (0.125) to the head (1)
    assert sorted({scale for _, scale in SEEN[0]}) == [0.125, 0.25, 0.5, 1.0]


def test_head_is_mae_s():
    torch.manual_seed(0)
    head = LinearHead(4096, 10)
    bn, fc = head
    assert isinstance(bn, nn.BatchNorm1d) and not bn.affine and bn.eps == 1e-6
    assert fc.weight.shape == (10, 4096) and torch.all(fc.bias == 0)
    assert abs(fc.weight.std().item() - 0.01) < 0.0005  # trunc-normal at +-2 std barely changes the spread
    assert fc.weight.abs().max() <= 2.0  # timm's trunc_normal_ cuts at [-2, 2]


def test_lars_matches_mae_update_by_hand():
    # MAE's util/lars.py, first step (momentum buffer starts at the update): weights (ndim > 1) move by
    # lr * (0.001 * |w| / |g|) * g; biases by lr * g.
    w = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # |w| = 5
    b = nn.Parameter(torch.tensor([1.0]))
    w.grad, b.grad = torch.tensor([[0.0, 2.0]]), torch.tensor([0.5])  # |g| = 2
    module = nn.Module()
    module.w, module.b = w, b
    opt = lars(module, lr=10.0, momentum=0.9)
    opt.step()
    q = 0.001 * 5 / 2
    torch.testing.assert_close(w.data, torch.tensor([[3.0, 4.0 - 10 * q * 2.0]]))
    torch.testing.assert_close(b.data, torch.tensor([1.0 - 10 * 0.5]))
    # Second step with the same gradients: the momentum buffer is 0.9 * previous + new.
    w_before = w.data.clone()
    opt.step()
    q2 = 0.001 * w_before.norm().item() / 2
    expected = w_before[0, 1] - 10 * (0.9 * q * 2.0 + q2 * 2.0)
    torch.testing.assert_close(w.data[0, 1], expected)


def test_config_rejects_bad_values_and_scales_lr():
    assert LinearProbeConfig(batch_size=1024, base_lr=0.1).lr == pytest.approx(0.4)
    with pytest.raises(ValueError, match="warmup_epochs"):
        LinearProbeConfig(epochs=5, warmup_epochs=10)
    with pytest.raises(ValueError, match="mode"):
        LinearProbeConfig(mode="fast")
    with pytest.raises(ValueError, match="BatchNorm"):
        LinearProbeConfig(batch_size=1)
