"""The recipes shipped with clmae: YAML/JSON files in this folder (read by :func:`clmae.train.config.load_recipe`).
No torch here: ``clmae train --help`` lists them."""

from __future__ import annotations

from pathlib import Path

RECIPES_DIR = Path(__file__).parent
SUFFIXES = (".yaml", ".yml", ".json")


def list_recipes() -> list[str]:
    """Names of the recipes shipped with clmae."""
    return sorted(p.stem for p in RECIPES_DIR.iterdir() if p.suffix in SUFFIXES)
