"""Start-up: ``import clmae`` and the command line's help, version and argument errors load no torch and no trainer
(names are imported when first used, :mod:`clmae._lazy`); every subcommand describes itself.

Each check runs in a fresh interpreter, where ``sys.modules`` shows what an import loaded.
"""

import argparse
import json
import subprocess
import sys

import pytest
from conftest import HANG_GUARD

import clmae
from clmae.cli import build_parser

pytestmark = pytest.mark.slow  # every check starts a fresh interpreter

# Run in a fresh interpreter: the clmae modules loaded, whether torch is, and what main() exited with.
PROBE = """
import json, sys
{code}
print(json.dumps({{"clmae": sorted(m for m in sys.modules if m.split(".")[0] == "clmae"),
                  "torch": "torch" in sys.modules, "timm": "timm" in sys.modules, "codes": codes}}))
"""


def _probe(code: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, timeout=HANG_GUARD, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """Every (command words, parser) below ``parser``."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subcommands(sub, (*prefix, name))


def test_import_clmae_loads_no_trainer_and_no_torch():
    seen = _probe("import clmae\ncodes = None")
    assert not [m for m in seen["clmae"] if m.startswith("clmae.train")]
    assert not seen["torch"] and not seen["timm"]
    assert seen["clmae"] == ["clmae", "clmae._lazy", "clmae._version"]


def test_help_version_and_argument_errors_import_no_torch():
    argvs = [["--help"], ["--version"], ["train", "--bogus"], ["eval", "knn"], ["nosuchcommand"]]
    argvs += [[*words, "--help"] for words, _ in _subcommands(build_parser())]
    code = f"""
from clmae.cli import main
codes = []
for argv in {argvs!r}:
    try:
        codes.append(main(argv))
    except SystemExit as e:
        codes.append(e.code)
"""
    seen = _probe(code)
    assert not seen["torch"] and not seen["timm"]
    # help and version exit 0, the three argument errors 2 (argparse's one line), as they did with torch loaded
    assert seen["codes"] == [0, 0, 2, 2, 2] + [0] * (len(argvs) - 5)


def test_version_is_the_packages(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"clmae {clmae.__version__}"


def test_every_subcommand_has_a_description_and_a_help_line():
    found = list(_subcommands(build_parser()))
    assert {"train", "eval", "extract", "demo", "list", "visualize", "convert", "push", "pretrained"} <= {
        words[0] for words, _ in found
    }
    assert ("eval", "knn") in {words for words, _ in found}
    missing = [" ".join(words) for words, sub in found if not (sub.description or "").strip()]
    assert not missing, f"subcommands without a description: {missing}"
    for parser in [build_parser(), *(sub for _, sub in found)]:  # the help line in the parent's list
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {a.dest: a.help for a in action._choices_actions}
                assert all(helps.get(name) for name in action.choices), helps


@pytest.mark.parametrize("package", ["clmae", "clmae.data", "clmae.models", "clmae.hub", "clmae.train", "clmae.eval"])
def test_every_exported_name_resolves_and_is_listed(package):
    module = __import__(package, fromlist=["__all__"])
    assert set(module.__all__) <= set(dir(module))
    for name in module.__all__:
        assert getattr(module, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        module.no_such_name  # noqa: B018


def test_a_function_keeps_its_name_when_its_module_of_the_same_name_is_imported():
    # ``from .finetune import finetune`` used to make clmae.eval.finetune the function; importing the module
    # clmae.eval.finetune (which binds the module on the package) must not change that.
    seen = _probe(
        "import clmae.eval, clmae.models, clmae.hub\n"
        "import clmae.eval.finetune, clmae.models.norm_eps, clmae.hub.resolve\n"
        "from clmae.eval import finetune\n"
        "from clmae.models import norm_eps\n"
        "codes = [callable(f) and not isinstance(f, type(sys)) for f in (finetune, norm_eps, clmae.hub.resolve)]\n"
        "codes.append(type(sys.modules['clmae.eval.finetune']).__name__)"
    )
    assert seen["codes"] == [True, True, True, "module"]


def test_a_submodule_is_an_attribute_after_import_clmae():
    seen = _probe("import clmae\ncodes = [clmae.models.__name__, clmae.curriculum.curriculum_phase.__name__]")
    assert seen["codes"] == ["clmae.models", "curriculum_phase"]
