"""The input pipelines live in one package, ``clmae/data/transforms/``, and docs/architecture.md lists all of it:
every module of the package is named under "Where a new thing goes", every path the page names exists, and every
public name of the package resolves to the object its module defines."""

import importlib
import re
from pathlib import Path

import clmae.data
import clmae.data.transforms as transforms

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clmae" / "data" / "transforms"
PAGE = ROOT / "docs" / "architecture.md"
ENTRY = "- **a normalisation, default statistics or a new input pipeline**"


def _pipeline_entry(page: str) -> str:
    """The bullet of "Where a new thing goes" about normalisation and input pipelines, up to the next paragraph that
    is not part of it."""
    rest = page[page.index(ENTRY) :]
    end = re.search(r"\n(?:- \*\*|\S)", rest)  # a line that starts the next bullet or a paragraph of its own
    return rest if end is None else rest[: end.start() + 1]


def test_the_page_names_every_module_of_the_transforms_package():
    entry = _pipeline_entry(PAGE.read_text())
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert {"numbers.py", "pil.py", "augment.py", "decode.py", "__init__.py"} <= set(modules)  # the walk is real
    missing = [name for name in modules if f"`{name}`" not in entry]
    assert not missing, f"docs/architecture.md does not list {missing} under 'a new input pipeline'"


def test_every_path_the_architecture_page_names_exists():
    page = PAGE.read_text()
    named = set(re.findall(r"`((?:clmae|tests|benchmarks|tools|docs)/[^`\s]*)`", page))
    assert "clmae/data/transforms/" in named and "clmae/eval/cache.py" in named
    gone = sorted(p for p in named if "<" not in p and not (ROOT / p.rstrip("/")).exists())
    assert not gone, f"docs/architecture.md names paths that do not exist: {gone}"


def test_the_entry_finder_stops_at_the_next_bullet_or_paragraph():
    page = f"- **before**: `w.py`\n{ENTRY}: a\n  `x.py`\n\n  more\n- **next**: `y.py`\n"
    assert _pipeline_entry(page) == f"{ENTRY}: a\n  `x.py`\n\n  more\n"
    page = f"{ENTRY}: `x.py`\n\nThe tables `z.py`\n"
    assert _pipeline_entry(page) == f"{ENTRY}: `x.py`\n\n"
    assert _pipeline_entry(f"{ENTRY}: `x.py`") == f"{ENTRY}: `x.py`"


def test_every_public_name_resolves_to_its_modules_object():
    assert set(transforms.__all__) == set(transforms._lazy)
    for name, module in transforms._lazy.items():
        defined = importlib.import_module(module, transforms.__name__)
        assert getattr(transforms, name) is getattr(defined, name), name
    # clmae.data re-exports the same objects, not copies
    for name in ("DeviceImages", "crop_params", "eval_transform", "pretrain_transform", "resized_crop"):
        assert getattr(clmae.data, name) is getattr(transforms, name)
