"""The linear probe's parts against MAE's formulas: LARS step, warm-up + cosine schedule, BatchNorm + linear head."""

import math

import pytest
import torch
from torch import nn

from clmae.eval import LinearProbeConfig
from clmae.eval._schedule import set_lr, warmup_cosine
from clmae.eval.linear import LinearHead, lars


def test_schedule_by_hand():
    # MAE's lr_sched: lr * e / warmup during warm-up, then lr * (1 + cos(pi * progress)) / 2.
    assert warmup_cosine(0, 1.0, 10, 90) == 0.0
    assert warmup_cosine(5, 1.0, 10, 90) == 0.5
    assert warmup_cosine(10, 1.0, 10, 90) == 1.0
    assert math.isclose(warmup_cosine(50, 1.0, 10, 90), 0.5)  # half-way through the cosine
    assert math.isclose(warmup_cosine(30, 2.0, 10, 90, min_lr=0.5), 0.5 + 1.5 * (1 + math.cos(math.pi / 4)) / 2)
    assert math.isclose(warmup_cosine(90, 1.0, 10, 90), 0.0, abs_tol=1e-12)


def test_set_lr_applies_lr_scale():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr_scale": 0.25}, {"params": [b]}], lr=1.0)
    set_lr(opt, 0.8)
    assert [g["lr"] for g in opt.param_groups] == [0.2, 0.8]


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
