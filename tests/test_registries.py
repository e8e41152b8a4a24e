"""The two registries: a data form and an evaluation protocol are each one module plus one entry.

Each test writes a toy module into a temporary folder, registers it by its ``"module:name"`` strings (as the built-in
entries are), finds it in the help, the parser and a run, and unregisters it.
"""

import json
import textwrap
from dataclasses import is_dataclass

import pytest
from PIL import Image

from clmae.cli import main
from clmae.data.spec import (
    FORMS,
    DataForm,
    check_outside,
    load_ref,
    parse_data_spec,
    register_data_form,
    unregister_data_form,
)
from clmae.eval.protocols import PROTOCOLS, Protocol, register_protocol, unregister_protocol

TOY_FORM = '''
from pathlib import Path

from clmae.data.images import ImageSource
from clmae.data.spec import DataSpec
from clmae.eval.data import EvalData


def parse(spec):
    if not spec.startswith("toy:"):
        return None
    if not spec[4:]:
        raise ValueError("toy: names no folder")
    return DataSpec(spec, "toy", Path(spec[4:]))


class ToyImages(ImageSource):
    """Every .png under the folder, by name."""

    def __init__(self, root):
        super().__init__()
        self.files = sorted(Path(root).rglob("*.png"))

    def raw_len(self):
        return len(self.files)

    def read(self, i):
        return self.files[i]

    def name(self, i):
        return str(self.files[i])


def source(parsed):
    return ToyImages(parsed.root), f"toy images in {parsed.root}"


def eval_reader(spec, parsed):
    classes = sorted(p.name for p in (parsed.root / "train").iterdir())
    cfg = {"input_size": (3, 8, 8), "crop_pct": 1.0, "interpolation": "bicubic", "mean": (0.0,) * 3, "std": (1.0,) * 3}
    return EvalData(spec, "toy", parsed.root, classes, cfg, "toy")
'''

TOY_PROTOCOL = """
from dataclasses import dataclass


@dataclass
class ToyConfig:
    scale: float = 1.0


def run(ctx, cfg):
    # a "metric" the test can compute by hand: the number of classes, scaled
    return {"top1": cfg.scale * ctx.dataset.num_classes}, (0, 0)
"""

# two classes of solid colours, far apart: raw-pixel kNN puts every validation image in its class
COLOURS = {"red": [(250, 0, 0), (230, 10, 0), (240, 5, 5)], "blue": [(0, 0, 250), (10, 0, 230), (5, 5, 240)]}


def _toy_folder(root):
    for split, picks in (("train", slice(0, 2)), ("val", slice(2, 3))):
        for name, colours in COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i, colour in enumerate(colours[picks]):
                Image.new("RGB", (8, 8), colour).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture
def toy_form(tmp_path, monkeypatch):
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "toy_form.py").write_text(textwrap.dedent(TOY_FORM))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    import toy_form

    form = DataForm(
        "toy",
        "toy:FOLDER",
        "toy images of the registry test",
        toy_form.parse,
        reader="toy_form:source",
        eval_reader="toy_form:eval_reader",
        folder=True,
    )
    register_data_form(form)
    yield _toy_folder(tmp_path / "data")
    unregister_data_form("toy")


@pytest.fixture
def toy_protocol(tmp_path, monkeypatch):
    (tmp_path / "mods").mkdir(exist_ok=True)
    (tmp_path / "mods" / "toy_protocol.py").write_text(textwrap.dedent(TOY_PROTOCOL))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    register_protocol(Protocol("toy", "toy_protocol:ToyConfig", "toy_protocol:run", "a toy protocol of the test"))
    yield
    unregister_protocol("toy")


def _help(capsys, *argv):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines


def test_a_data_form_is_in_the_help_the_grammar_the_checks_and_the_runs(toy_form, tmp_path, capsys):
    assert "toy:FOLDER (toy images of the registry test)" in _help(capsys, "train")
    assert "toy:FOLDER (toy images of the registry test)" in _help(capsys, "eval", "knn")  # labelled: eval reads it
    parsed = parse_data_spec(f"toy:{toy_form}")
    assert parsed.kind == "toy" and parsed.root == toy_form and parsed.labelled
    from clmae.data import spec

    assert "toy:FOLDER" in spec.SPECS and "toy" in spec.LABELLED
    with pytest.raises(ValueError, match="inside the data folder"):  # folder=True: an output inside is refused
        check_outside(toy_form / "run", f"toy:{toy_form}", "--out")

    from clmae.data import build_pretraining_data

    data = build_pretraining_data(
        f"toy:{toy_form}", in_chans=3, img_size=8, augment=False, mean=(0.0,) * 3, std=(1.0,) * 3
    )
    assert len(data.dataset) == 6 and data.description.startswith(f"toy images in {toy_form}, 6 images")
    first = data.preview[(0, 0)]  # the first file (sorted): train/blue/0.png, (0, 0, 250) scaled to [0, 1]
    assert first.shape == (3, 8, 8) and abs(float(first[2].mean()) - 250 / 255) < 0.02 and float(first[0].max()) < 0.02

    out = tmp_path / "knn.json"
    argv = ["eval", "knn", "--model", "raw-pixels", "--data", f"toy:{toy_form}", "--out", str(out)]
    assert main([*argv, "device=cpu", "cache=false", "k=1", "k_weighted=1"]) == 0
    result = json.loads(out.read_text())
    assert result["data"]["kind"] == "toy" and result["data"]["num_classes"] == 2
    assert (result["data"]["train_size"], result["data"]["val_size"]) == (4, 2)
    assert result["metrics"]["reference"]["top1"] == 1.0  # the nearest train image is always of the same colour


def test_an_unregistered_form_is_unknown_again(toy_form):
    unregister_data_form("toy")
    try:
        with pytest.raises(ValueError, match="unknown data form 'toy'"):
            parse_data_spec(f"toy:{toy_form}")
    finally:
        register_data_form(DataForm("toy", "toy:FOLDER", "again", lambda spec: None))  # the fixture removes it


def test_an_unlabelled_form_is_refused_by_eval_naming_the_labelled_ones(capsys):
    assert main(["eval", "knn", "--model", "raw-pixels", "--data", "synthetic:4"]) == 2
    err = capsys.readouterr().err
    assert "has no labels" in err and "imagefolder:FOLDER" in err and "wds:" not in err.split("use", 1)[1]


def test_a_protocol_is_in_the_help_the_parser_and_the_run(toy_protocol, tmp_path, capsys):
    assert "toy" in _help(capsys, "eval") and "a toy protocol of the test" in _help(capsys, "eval")
    text = _help(capsys, "eval", "toy")
    assert "a toy protocol of the test" in text and "toy_protocol.ToyConfig" in text
    out = tmp_path / "toy.json"
    argv = ["eval", "toy", "--model", "raw-pixels", "--data", "fmnist-sample", "--out", str(out)]
    assert main([*argv, "scale=0.5", "device=cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["protocol"] == "toy" and result["metrics"] == {"top1": 5.0}  # 10 classes x 0.5
    assert result["hparams"]["scale"] == 0.5 and "seed" in result["hparams"]
    capsys.readouterr()
    assert main([*argv, "scael=2"]) == 2  # the toy's config is the option list
    assert "scael" in capsys.readouterr().err

    from clmae.eval import run_eval

    assert run_eval("toy", "raw-pixels", "fmnist-sample", {"scale": "2"}).metrics == {"top1": 20.0}


def test_an_unregistered_protocol_is_gone_from_parser_and_run(toy_protocol, capsys):
    unregister_protocol("toy")
    try:
        with pytest.raises(SystemExit) as e:
            main(["eval", "toy", "--model", "raw-pixels", "--data", "fmnist-sample"])
        assert e.value.code == 2 and "invalid choice: 'toy'" in capsys.readouterr().err
        from clmae.eval import run_eval

        with pytest.raises(ValueError, match="protocol must be one of"):
            run_eval("toy", "raw-pixels", "fmnist-sample")
    finally:
        register_protocol(Protocol("toy", "x:y", "x:z", "again"))  # the fixture removes it


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="already registered"):
        register_data_form(FORMS["wds"])
    with pytest.raises(ValueError, match="already registered"):
        register_protocol(PROTOCOLS["knn"])
    with pytest.raises(TypeError):  # an entry without its help cannot be made, so the help cannot miss a key
        Protocol("nohelp", "a:b", "a:c")


def test_every_built_in_entry_names_what_exists():
    """The strings of the tables are only imported when used: check every one now."""
    for form in FORMS.values():
        assert form.syntax and form.help and "\n" not in form.help
        for ref in (form.reader, form.eval_reader):
            assert ref is None or callable(load_ref(ref)), ref
    assert {k for k, f in FORMS.items() if f.folder} == {"imagefolder", "hfds"}
    assert {k for k, f in FORMS.items() if f.labelled} == {"fmnist", "imagefolder"}
    for name, protocol in PROTOCOLS.items():
        assert protocol.name == name and protocol.help
        assert is_dataclass(protocol.config_class()) and callable(protocol.run_function())
        assert protocol.config_path.endswith(protocol.config_class().__name__)
