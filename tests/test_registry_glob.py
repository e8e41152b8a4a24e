"""Registry patterns match full weight names the way a shell's glob (fnmatch) does; aliases only by exact name."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from clmae.hub.registry import entries, list_pretrained

NAMES = {
    "vit_tiny_patch4_28.clmae_fmnist",
    "vit_tiny_patch4_28.mae_fmnist",
    "vit_base_patch16_224.clmae_in1k",
    "vit_base_patch16_224.mae",
    "vit_large_patch16_224.mae",
    "vit_huge_patch14_224.mae",
}


def _glob(pattern: str, name: str) -> bool:
    # An independent shell-glob matcher (*, ?, no brackets needed here) to compare with.
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, name) is not None


def test_registry_names_are_the_expected_six():
    assert {e.name for e in entries()} == NAMES


def test_patterns_match_full_names_as_a_shell_does():
    cases = {
        "*": NAMES,
        "*mae*": NAMES,  # "clmae" contains "mae": a shell matches all six too
        "*.mae*": {n for n in NAMES if n.split(".")[1].startswith("mae")},
        "*.mae": {"vit_base_patch16_224.mae", "vit_large_patch16_224.mae", "vit_huge_patch14_224.mae"},
        "*clmae*": {"vit_tiny_patch4_28.clmae_fmnist", "vit_base_patch16_224.clmae_in1k"},
        "vit_t*": {"vit_tiny_patch4_28.clmae_fmnist", "vit_tiny_patch4_28.mae_fmnist"},
        "mae_*": set(),  # an alias prefix: no name starts with it
        "vit_b*": {"vit_base_patch16_224.clmae_in1k", "vit_base_patch16_224.mae"},
        "*_fmnist": {"vit_tiny_patch4_28.clmae_fmnist", "vit_tiny_patch4_28.mae_fmnist"},
        "vit_?????_patch16_224.mae": {"vit_large_patch16_224.mae"},
    }
    for pattern, expected in cases.items():
        assert set(list_pretrained(pattern)) == expected, pattern
        assert expected == {n for n in NAMES if _glob(pattern, n)}, pattern  # the table itself is shell-true
    assert len(list_pretrained("*.mae*")) == 4


def test_exact_alias_still_finds_its_weight():
    assert list_pretrained("vit_b") == ["vit_base_patch16_224.clmae_in1k"]
    assert list_pretrained("mae_vit_t_fmnist") == ["vit_tiny_patch4_28.mae_fmnist"]
    assert list_pretrained("vit_t_fmnist*") == []  # a wildcard makes it a pattern on names


@pytest.mark.slow
def test_cli_pretrained_pattern():
    out = subprocess.run(
        [sys.executable, "-m", "clmae", "pretrained", "*.mae"], capture_output=True, text=True, check=True
    ).stdout
    listed = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert listed == {"vit_base_patch16_224.mae", "vit_large_patch16_224.mae", "vit_huge_patch14_224.mae"}
