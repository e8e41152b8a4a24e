"""Models sized before they are built: the meta-device count equals the real one, and a model too large for memory
is refused by its argument before anything is allocated."""

import pytest
import torch

import clmae
from clmae.models import PretrainingConfig
from clmae.models._size import check_fits
from clmae.models.factory import encoder_numel, pretraining_numel


def _numel(model):
    return sum(t.numel() for t in (*model.parameters(), *model.buffers()))


@pytest.mark.slow
@pytest.mark.parametrize("kwargs", [{}, {"depth": 3}, {"depth": 1}, {"embed_dim": 48, "num_heads": 3, "img_size": 32}])
def test_the_encoder_estimate_is_its_real_size(kwargs):
    assert encoder_numel("vit_tiny_patch4_28", kwargs) == _numel(clmae.create_model("vit_tiny_patch4_28", **kwargs))


@pytest.mark.parametrize("method", ["clmae", "mae"])
def test_the_pretraining_estimate_is_its_real_size(method):
    kwargs = dict(embed_dim=32, depth=3, num_heads=2, decoder_embed_dim=16, decoder_depth=2, decoder_num_heads=2)
    cfg = PretrainingConfig.from_kwargs("vit_tiny_patch4_28", method, masker_depth=2, **kwargs)
    assert pretraining_numel(cfg) == _numel(clmae.create_pretraining_model(cfg))


def test_too_large_names_the_argument_that_makes_it_so():
    counts = {(): 10, ("depth",): 10**15, ("embed_dim",): 10**6, ("depth", "embed_dim"): 10**16}

    def numel(args):
        return counts[tuple(sorted(args))]

    with pytest.raises(
        ValueError, match=r"model argument depth=1000 makes the toy too large: about .* of memory \(.* free now\)"
    ):
        check_fits("the toy", numel, {"depth": 1000, "embed_dim": 64})
    check_fits("the toy", numel, {})  # 40 bytes fit


def test_an_allocation_beyond_what_torch_can_address_is_refused_as_too_large():
    with pytest.raises(ValueError, match=r"embed_dim=10000000000 makes .* more than 9\.2 EB"):
        clmae.create_model("vit_tiny_patch4_28", embed_dim=10**10, num_heads=1)
    assert torch.get_default_dtype() == torch.float32
