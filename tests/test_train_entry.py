"""The training entry is a straight line: before the first update the pretraining model is built once, on the device
it trains on (never on ``meta`` to check it), and sized at most once -- counted by wrapping the functions, for
``clmae.train.train(cfg)`` and for the ``clmae train`` command."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import pytest
import torch
from conftest import TINY_RUN

from clmae import cli
from clmae.models import PretrainingConfig, factory
from clmae.train import trainer
from clmae.train.config import TrainConfig

pytestmark = pytest.mark.usefixtures("one_thread")

RUN = {
    "model": "vit_tiny_patch4_28",
    "data": "synthetic:16",
    "epochs": 1,
    "batch_size": 8,
    "warmup_epochs": 0,
    "log_every": 1,
    "vis_every": 0,
    "vis_images": 2,
    "export": False,
    "progress": False,
    "device": "cpu",
}


@dataclass
class Counts:
    """What happened up to now, and as it stood when the first update began."""

    builds: list[str] = field(default_factory=list)  # the device type of each pretraining model built
    sizings: int = 0
    at_first_step: tuple[list[str], int] | None = None
    stepped_model: torch.nn.Module | None = None
    built: list[torch.nn.Module] = field(default_factory=list)


def _replace_everywhere(monkeypatch, original, wrapper) -> None:
    """Put ``wrapper`` wherever a loaded ``clmae`` module holds ``original`` (modules bind the names they import)."""
    for name, module in list(sys.modules.items()):
        if name.startswith("clmae") and module is not None:
            for attr, value in list(vars(module).items()):
                if value is original:
                    monkeypatch.setattr(module, attr, wrapper)


@pytest.fixture
def counts(monkeypatch) -> Counts:
    seen = Counts()
    build, size, step = factory.create_pretraining_model, factory.check_pretraining_fits, trainer.train_step

    def counted_build(*args, **kwargs):
        model = build(*args, **kwargs)
        seen.builds.append(next(model.parameters()).device.type)
        seen.built.append(model)
        return model

    def counted_size(*args, **kwargs):
        seen.sizings += 1
        return size(*args, **kwargs)

    def first_step(model, *args, **kwargs):
        if seen.at_first_step is None:
            seen.at_first_step = (list(seen.builds), seen.sizings)
            seen.stepped_model = model
        return step(model, *args, **kwargs)

    _replace_everywhere(monkeypatch, build, counted_build)
    _replace_everywhere(monkeypatch, size, counted_size)
    monkeypatch.setattr(trainer, "train_step", first_step)
    return seen


def _assert_straight(seen: Counts) -> None:
    assert seen.at_first_step is not None, "no update ran"
    builds, sizings = seen.at_first_step
    assert builds == ["cpu"], f"pretraining models built before the first update, by device: {builds}"
    assert sizings <= 1, f"{sizings} sizing passes before the first update"
    # the model built is the model trained, moved to its device: not a second one
    assert seen.stepped_model is seen.built[0]
    assert next(seen.stepped_model.parameters()).device == torch.device("cpu")


def test_the_counters_see_a_check_on_meta_and_its_sizing(counts):
    """The wrappers catch what they are meant to: the former check (a build on ``meta``, which sizes it)."""
    factory.check_config(PretrainingConfig.from_kwargs("vit_tiny_patch4_28", "clmae", **TINY_RUN))
    assert (counts.builds, counts.sizings) == (["meta"], 1)
    factory.create_pretraining_model("vit_tiny_patch4_28", check_size=False, **TINY_RUN)
    assert (counts.builds, counts.sizings) == (["meta", "cpu"], 1)


def test_train_builds_the_model_once_on_its_device_and_sizes_it_once(tmp_path, counts):
    cfg = TrainConfig.from_dict({**RUN, "model_kwargs": TINY_RUN, "out": str(tmp_path / "run")})
    result = trainer.train(cfg)
    assert result["step"] == 2  # 16 images, batches of 8: the run did run
    _assert_straight(counts)


def test_the_train_command_builds_the_model_once_and_sizes_it_once(tmp_path, counts, monkeypatch):
    monkeypatch.chdir(tmp_path)
    options = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in RUN.items() if k != "data"]
    argv = ["train", *options, *(f"model_kwargs.{k}={v}" for k, v in TINY_RUN.items())]
    assert cli.main([*argv, "--data", RUN["data"], "--out", "run"]) == 0
    assert (tmp_path / "run" / "checkpoint-0001.pt").is_file()
    _assert_straight(counts)


def test_a_model_that_does_not_build_is_refused_before_out_exists(tmp_path, counts):
    """The checks the meta build made are made by the one real build, still before ``--out`` is created."""
    bad = {**TINY_RUN, "num_heads": 5}  # embed_dim is not divisible by 5 heads
    cfg = TrainConfig.from_dict({**RUN, "model_kwargs": bad, "out": str(tmp_path / "run")})
    with pytest.raises(ValueError, match="num_heads"):
        trainer.train(cfg)
    assert not (tmp_path / "run").exists()
    assert counts.at_first_step is None
