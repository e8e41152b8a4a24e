"""One behaviour through every entry point: weights loading, key=value overrides, timm's create_model contract, and
the package's import graph."""

import ast
from pathlib import Path

import pytest
import torch

import clmae
from clmae import cli
from clmae.eval.model import resolve_model
from clmae.eval.run import parse_options
from clmae.train.config import resolve_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_img_size_resamples_the_positions_in_load_pretrained_create_model_and_eval():
    plain = clmae.load_pretrained("vit_t_fmnist")
    loaded = clmae.load_pretrained("vit_t_fmnist", img_size=56)
    created = clmae.create_model("vit_t_fmnist", pretrained=True, img_size=56)
    evaluated = resolve_model("vit_t_fmnist", overrides={"img_size": 56}).encoder()
    assert loaded.pos_embed.shape == (1, 1 + 14 * 14, 192)
    for other in (created, evaluated):
        assert other.state_dict().keys() == loaded.state_dict().keys()
        assert all(torch.equal(v, other.state_dict()[k]) for k, v in loaded.state_dict().items())
    # Only the positions changed: the class token's position is kept, the grid is resampled.
    assert torch.equal(loaded.pos_embed[:, 0], plain.pos_embed[:, 0])
    assert torch.equal(loaded.blocks[0].attn.qkv.weight, plain.blocks[0].attn.qkv.weight)
    x = torch.randn(2, 1, 56, 56)
    with torch.no_grad():
        assert torch.equal(loaded(x), evaluated.eval()(x))


def test_number_syntax_is_the_same_for_train_and_eval():
    assert resolve_config("clmae_fmnist_tiny", ["epochs=1e3", "warmup_epochs=1"]).epochs == 1000
    _, linear, _ = parse_options("linear", {"epochs": "1e3"})
    assert linear.epochs == 1000 and isinstance(linear.epochs, int)
    for bad in ("2.5", "ten"):
        with pytest.raises(ValueError, match=rf"epochs='{bad}': expected int"):
            resolve_config("clmae_fmnist_tiny", [f"epochs={bad}"])
        with pytest.raises(ValueError, match=rf"epochs='{bad}': expected int"):
            parse_options("linear", {"epochs": bad})


def test_model_argument_typos_are_refused_by_train_and_eval():
    for prefix in ("model_kwargs.", "model."):
        with pytest.raises(ValueError, match=r"unknown model argument 'dpeth' \(did you mean depth"):
            resolve_config("clmae_fmnist_tiny", [f"{prefix}dpeth=1"])
        with pytest.raises(ValueError, match=r"unknown model argument 'dpeth' \(did you mean depth"):
            parse_options("knn", {f"{prefix}dpeth": "1"})
    with pytest.raises(ValueError, match=r"unknown model argument 'dpeth' \(did you mean depth"):
        clmae.load_pretrained("vit_t_fmnist", dpeth=1)
    cfg = resolve_config("clmae_fmnist_tiny", ["model_kwargs.depth=1", "model.decoder_depth=1"])
    assert (cfg.model_kwargs["depth"], cfg.model_kwargs["decoder_depth"]) == (1, 1)
    assert parse_options("knn", {"model_kwargs.depth": "1"})[2] == {"depth": 1}


def test_overrides_may_stand_between_options(monkeypatch):
    seen = {}
    monkeypatch.setattr("clmae.train.trainer.train", lambda cfg, resume=None: seen.setdefault("cfg", cfg))
    argv = ["train", "--recipe", "clmae_fmnist_tiny", "epochs=1", "--data", "synthetic:8", "--out", "o"]
    assert cli.main([*argv, "model_kwargs.depth=1", "warmup_epochs=0"]) == 0
    cfg = seen["cfg"]
    assert (cfg.epochs, cfg.data, cfg.out, cfg.model_kwargs["depth"], cfg.warmup_epochs) == (
        1,
        "synthetic:8",
        "o",
        1,
        0,
    )
    with pytest.raises(SystemExit):  # anything else left over is still an error
        cli.main([*argv, "--no-such-flag"])


def test_eval_options_may_stand_between_options(monkeypatch):
    seen = {}

    def fake_run_eval(protocol, model, data, options, out, **kwargs):
        seen.update(protocol=protocol, model=model, data=data, options=options)
        raise ValueError("stop here")

    monkeypatch.setattr("clmae.eval.run.run_eval", fake_run_eval)
    argv = ["eval", "knn", "k=3", "--model", "raw-pixels", "train-limit=10", "--data", "fmnist-sample", "k_weighted=4"]
    assert cli.main(argv) == 2
    assert seen["options"] == {"k": "3", "train_limit": "10", "k_weighted": "4"}


def test_create_model_keeps_timms_contract():
    pretrained = clmae.create_model("vit_t_fmnist", pretrained=True)
    assert pretrained.training and all(m.training for m in pretrained.modules())
    assert not pretrained._forward_pre_hooks and not pretrained._forward_hooks
    assert clmae.create_model("vit_tiny_patch4_28").training
    # The feature-extractor path stays in eval mode, with the same weights.
    extractor = clmae.load_pretrained("vit_t_fmnist")
    assert not extractor.training and not extractor._forward_pre_hooks
    assert all(torch.equal(v, extractor.state_dict()[k]) for k, v in pretrained.state_dict().items())


def test_a_weight_name_without_pretrained_gives_its_architecture_with_random_weights():
    torch.manual_seed(0)
    model = clmae.create_model("vit_tiny_patch4_28.clmae_fmnist")
    weights = clmae.load_pretrained("vit_tiny_patch4_28.clmae_fmnist")
    assert model.training and model.state_dict().keys() == weights.state_dict().keys()
    assert not torch.equal(model.blocks[0].attn.qkv.weight, weights.blocks[0].attn.qkv.weight)
    assert model.pretrained_cfg["tag"] == "clmae_fmnist" and model.pretrained_cfg["input_size"] == (1, 28, 28)
    assert clmae.create_model("mae_vit_t_fmnist").pretrained_cfg["method"] == "mae"
    with pytest.raises(ValueError, match=r"Unknown model 'vit_tiny_patch4_29'.*Nor is it a weight"):
        clmae.create_model("vit_tiny_patch4_29")


def test_load_pretraining_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="load_pretraining_model"):
        model = clmae.load_pretraining("vit_t_fmnist")
    assert model.method == "clmae" and model.config == clmae.load_pretraining_model("vit_t_fmnist").config


def _imports(path: Path) -> set[str]:
    """The clmae modules a file imports (absolute names), read from its syntax tree."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.add(name)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {n for n in found if n == "clmae" or n.startswith("clmae.")}


def _unit(module: str) -> str:
    """A subpackage (clmae.models, clmae.hub, ...) or a top-level module (clmae.viz, clmae._files, ...)."""
    parts = module.split(".")
    if len(parts) >= 2 and (ROOT / "clmae" / parts[1]).is_dir():
        return ".".join(parts[:2])
    return ".".join(parts[:2]) if len(parts) >= 2 else "clmae"


def test_the_package_has_no_import_cycle_and_models_know_nothing_of_hub():
    graph: dict[str, set[str]] = {}
    private_reaches = []
    for path in (ROOT / "clmae").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        unit = _unit(module)
        for imported in _imports(path):
            target = _unit(imported)
            if target != unit and target != "clmae.__init__":
                graph.setdefault(unit, set()).add(target)
            # a private module (clmae.pkg._x) used from outside its own package
            parts = imported.split(".")
            if len(parts) >= 3 and parts[2].startswith("_") and parts[2] != "__init__" and unit != ".".join(parts[:2]):
                private_reaches.append(f"{module} -> {imported}")
    assert "clmae.hub" not in graph.get("clmae.models", set())
    assert not private_reaches
    # The package root (clmae/__init__.py) only re-exports; every other unit must form an acyclic graph.
    graph = {u: {t for t in ts if t != "clmae"} for u, ts in graph.items() if u != "clmae"}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        if state.get(node) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*trail, node])}")
        if state.get(node) == 2:
            return
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        visit(node, [])


def test_the_demo_takes_only_fashion_mnist_specs(tmp_path, capsys):
    for spec in ("synthetic:8", f"imagefolder:{tmp_path}"):
        assert cli.main(["demo", "--out", str(tmp_path / "demo"), "--data", spec]) == 2
        assert "the demo reads Fashion-MNIST" in capsys.readouterr().err


# docs/architecture.md: the floors of the package; a unit imports only from floors below its own.
FLOORS = {
    # floor 0 in three steps (0a, 0b, 0c on the page): root modules that build on one another
    **dict.fromkeys(("_files", "_disk", "_parse", "_cli_errors", "_options", "_progress", "_state_dict"), 0),
    **dict.fromkeys(("_device", "_compat", "_version", "_lazy", "curriculum"), 0),
    **dict.fromkeys(("_atomic", "_overrides", "_config_json", "_checkpoint_file"), 0.1),
    "_safetensors": 0.2,
    "data": 1,
    "models": 2,
    "hub": 3,
    "viz": 3,
    "train": 4,
    "factory": 4,
    "eval": 5,
    "demo": 6,
    "cli": 7,
    "__main__": 8,
    "__init__": 8,
}


def test_every_import_points_to_a_lower_floor_as_docs_architecture_states():
    page = (ROOT / "docs" / "architecture.md").read_text()
    wrong = []
    for path in (ROOT / "clmae").rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        unit = _unit(module).removeprefix("clmae.")
        assert unit in FLOORS, f"{unit} has no floor: add it to docs/architecture.md and FLOORS"
        assert f"`{unit}" in page, f"docs/architecture.md does not place {unit}"
        for imported in _imports(path):
            target = _unit(imported).removeprefix("clmae.")
            if target not in (unit, "clmae") and FLOORS.get(target, 99) >= FLOORS[unit]:
                wrong.append(f"{module} (floor {FLOORS[unit]}) -> {imported} (floor {FLOORS.get(target)})")
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def _modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package's ``__init__`` by the package's name)."""
    found = {}
    for path in (ROOT / "clmae").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` imports anywhere in its file, inside functions too."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1]) if node.level else ""
            target = ".".join(p for p in (base, node.module) if p)
            # `from . import x` names a module when x is one, else a name of the package's __init__
            found.update(f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def _package_of(name: str, modules: dict[str, Path]) -> str:
    return name if modules[name].name == "__init__.py" else name.rsplit(".", 1)[0]


def _first_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as the list of its nodes (first node repeated at the end), or ``None``."""
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        if state.get(node) == 1:
            return [*trail[trail.index(node) :], node]
        if state.get(node) == 2:
            return None
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if (cycle := visit(nxt, [*trail, node])) is not None:
                return cycle
        state[node] = 2
        return None

    for node in sorted(graph):
        if (cycle := visit(node, [])) is not None:
            return cycle
    return None


def test_first_cycle_finds_loops_and_only_loops():
    assert _first_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert _first_cycle({"a": {"b"}, "b": {"c"}, "c": {"b"}}) == ["b", "c", "b"]
    assert _first_cycle({"a": {"a"}}) == ["a", "a"]


def test_modules_inside_a_package_import_each_other_without_a_loop(tmp_path):
    """Function-level imports count: a loop they close is still a loop (it only hides until first call)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = _package_of(name, modules)
        for imported in _imported_modules(name, path, modules):
            if _package_of(imported, modules) == package:
                graph.setdefault(name, set()).add(imported)
    assert graph["clmae.train.trainer"] >= {"clmae.train.batches", "clmae.train.visualize"}  # the graph is real
    cycle = _first_cycle(graph)
    assert cycle is None, f"import loop inside a package: {' -> '.join(cycle)}"
    # The reader sees function-level and `from . import x` imports.
    (tmp_path / "clmae" / "pkg").mkdir(parents=True)
    fake = {"clmae.pkg": tmp_path / "clmae/pkg/__init__.py", "clmae.pkg.a": tmp_path / "clmae/pkg/a.py"}
    fake["clmae.pkg.b"] = tmp_path / "clmae/pkg/b.py"
    fake["clmae.pkg.a"].write_text("def f():\n    from .b import g\n")
    fake["clmae.pkg.b"].write_text("from . import a\nfrom clmae.pkg import b\n")
    assert _imported_modules("clmae.pkg.a", fake["clmae.pkg.a"], fake) == {"clmae.pkg.b"}
    assert _imported_modules("clmae.pkg.b", fake["clmae.pkg.b"], fake) == {"clmae.pkg.a"}
