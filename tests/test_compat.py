import importlib
import sys
import warnings

import timm.optim

with warnings.catch_warnings():  # timm >= 1.0.12 deprecates the old location it is tested against here
    warnings.simplefilter("ignore", FutureWarning)
    import timm.optim.optim_factory


def test_param_groups_import_falls_back_for_old_timm(monkeypatch):
    # timm < 1.0.12 has param_groups_* in timm.optim.optim_factory only.
    for name in ("param_groups_layer_decay", "param_groups_weight_decay"):
        monkeypatch.delattr(timm.optim, name)
    monkeypatch.delitem(sys.modules, "clmae._compat")
    compat = importlib.import_module("clmae._compat")
    assert compat.param_groups_weight_decay is timm.optim.optim_factory.param_groups_weight_decay
    assert compat.param_groups_layer_decay is timm.optim.optim_factory.param_groups_layer_decay
