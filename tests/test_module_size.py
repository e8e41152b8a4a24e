"""Every module of the package stays small: at most 400 lines (docs/architecture.md), so that each file holds one
job a reader can take in at once."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 400


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_of_the_package_exceeds_400_lines():
    sizes = {p.relative_to(ROOT).as_posix(): _lines(p) for p in sorted((ROOT / "clmae").rglob("*.py"))}
    assert len(sizes) > 50  # the walk found the package
    too_long = {name: n for name, n in sizes.items() if n > LIMIT}
    assert not too_long, f"modules over {LIMIT} lines (split them by job): {too_long}"


def test_the_line_count_is_the_editors(tmp_path):
    path = tmp_path / "m.py"
    path.write_text("a = 1\n\nb = 2\n")  # three lines, as an editor numbers them
    assert _lines(path) == 3
    path.write_text("a = 1\nb = 2")  # no final newline: still two lines
    assert _lines(path) == 2
