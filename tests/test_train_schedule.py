import itertools
import math

import pytest
import torch

from clmae.train.schedule import lr_at, peak_lr, set_lr


def test_linear_scaling_rule():
    assert peak_lr(1.5e-4, 4096) == pytest.approx(2.4e-3)  # MAE's ImageNet recipe
    assert peak_lr(1e-3, 256) == 1e-3
    assert peak_lr(1e-3, 512, lr=5e-4) == 5e-4  # an absolute lr wins


def test_warmup_then_half_cosine():
    # 10 updates, 4 of warm-up, peak 1, floor 0.1; values by hand.
    lrs = [lr_at(s, 10, 4, 1.0, 0.1) for s in range(10)]
    assert lrs[:4] == [0.0, 0.25, 0.5, 0.75]
    assert lrs[4] == pytest.approx(1.0)  # cosine starts at the peak
    assert lrs[7] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 6)))  # = 0.55
    assert lrs[7] == pytest.approx(0.55)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    assert lr_at(0, 5, 0, 2.0) == 2.0  # no warm-up
    with pytest.raises(ValueError, match="step"):
        lr_at(10, 10, 4, 1.0)


def test_set_lr_on_all_groups():
    a = torch.optim.AdamW([{"params": [torch.zeros(2, requires_grad=True)]}, {"params": [torch.zeros(1)]}], lr=1)
    set_lr([a, None], 0.3)
    assert [g["lr"] for g in a.param_groups] == [0.3, 0.3]
