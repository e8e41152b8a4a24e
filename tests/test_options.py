"""Config fields declared with ``option()`` (clmae/_options.py): the rules, their messages, the docstring, and every
config class of clmae declaring its fields that way."""

import dataclasses
from dataclasses import dataclass

import pytest

from clmae._options import attributes_doc, check_fields, option
from clmae.eval.finetune import FinetuneConfig
from clmae.eval.linear import LinearProbeConfig
from clmae.eval.run import CommonConfig, KnnConfig
from clmae.train.config import TrainConfig


@dataclass
class Toy:
    """A toy config."""

    rate: float = option(0.5, "a rate.", above=0, at_most=1)
    prob: float = option(0.5, "a probability.", at_least=0, at_most=1)
    count: int = option(4, "a count.", at_least=2, multiple_of=2, why="pairs")
    steps: int = option(3, "a step count.", multiple_of=3)
    limit: int | None = option(None, "a limit.", at_least=1, none="no limit")
    ceiling: float = option(1.0, "a ceiling.", at_most=2)
    floor: float = option(1.0, "a floor.", above=0.5, finite=True)
    kind: str = option("a", "a kind.", choices=("a", "b"))
    table: dict = option({"x": 1}, "a table.")  # noqa: RUF009 (option copies a dict default per instance)

    def __post_init__(self) -> None:
        check_fields(self)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"rate": 0.0}, "rate must be in (0, 1], got 0.0"),
        ({"rate": 1.5}, "rate must be in (0, 1], got 1.5"),
        ({"prob": -0.1}, "prob must be in [0, 1], got -0.1"),
        ({"count": 0}, "count must be >= 2 (pairs), got 0"),
        ({"count": 5}, "count must be even (pairs), got 5"),
        ({"steps": 4}, "steps must be a multiple of 3, got 4"),
        ({"limit": 0}, "limit must be >= 1 (or none for no limit), got 0"),
        ({"ceiling": 2.5}, "ceiling must be <= 2, got 2.5"),
        ({"floor": 0.5}, "floor must be > 0.5, got 0.5"),
        ({"floor": float("inf")}, "floor must be a finite number, got inf"),
        ({"kind": "c"}, "kind must be one of a, b, got 'c'"),
    ],
)
def test_each_rule_refuses_with_one_line_naming_the_field_and_the_range(values, message):
    with pytest.raises(ValueError) as err:
        Toy(**values)
    assert str(err.value) == message


def test_values_on_the_bounds_and_none_pass_and_dict_defaults_are_not_shared():
    a = Toy(rate=1.0, prob=0.0, count=2, steps=6, limit=None, ceiling=2, floor=0.6, kind="b")
    b = Toy()
    a.table["y"] = 2
    assert b.table == {"x": 1}


def test_the_docstring_lists_every_field_with_its_doc():
    doc = attributes_doc(Toy)
    assert doc.startswith("A toy config.\n\nAttributes:\n    rate: a rate.\n    prob: a probability.\n")
    assert doc.count("\n    ") == len(dataclasses.fields(Toy))


@pytest.mark.parametrize("cls", [TrainConfig, CommonConfig, KnnConfig, LinearProbeConfig, FinetuneConfig])
def test_every_config_class_declares_its_fields_with_option(cls):
    undeclared = [f.name for f in dataclasses.fields(cls) if "doc" not in f.metadata]
    assert not undeclared
    for f in dataclasses.fields(cls):
        assert f"    {f.name}: " in cls.__doc__  # the docstring is made from the declarations


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: LinearProbeConfig(batch_size=1), ("batch_size", ">= 2", "BatchNorm", "got 1")),
        (lambda: LinearProbeConfig(crop_min=0.0), ("crop_min", "(0, 1]", "got 0.0")),
        (lambda: LinearProbeConfig(hflip=1.5), ("hflip", "[0, 1]", "got 1.5")),
        (lambda: LinearProbeConfig(pool="max"), ("pool", "cls, avg", "'max'")),
        (lambda: FinetuneConfig(batch_size=3), ("batch_size", "even", "mixup", "got 3")),
        (lambda: FinetuneConfig(layer_decay=0.0), ("layer_decay", "(0, 1]", "got 0.0")),
        (lambda: FinetuneConfig(crop_min=1.5), ("crop_min", "(0, 1]", "got 1.5")),
        (lambda: KnnConfig(variant="all"), ("variant", "both, reference, weighted", "'all'")),
        (lambda: KnnConfig(pool="max"), ("pool", "avg, cls", "'max'")),
        (lambda: CommonConfig(extract_batch_size=0), ("extract_batch_size", ">= 1", "got 0")),
    ],
)
def test_the_evaluation_configs_refuse_values_out_of_range(make, words):
    with pytest.raises(ValueError) as err:
        make()
    assert all(w in str(err.value) for w in words), str(err.value)
