"""Packages whose names are imported when first used (PEP 562), as timm and transformers do: ``import clmae`` then
loads neither torch nor the trainer, and ``clmae --help`` answers at once."""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _LazyPackage(types.ModuleType):
    """A package module that imports a name's defining module on the first read of the name."""

    _lazy: dict[str, str]

    def __getattr__(self, name: str) -> Any:  # only called when the name is not (yet) an attribute
        lazy = self.__dict__.get("_lazy", {})
        if name in lazy:
            value = getattr(importlib.import_module(lazy[name], self.__name__), name)
        else:
            try:  # a submodule not imported yet (``clmae.models`` after ``import clmae``), as before
                value = importlib.import_module(f"{self.__name__}.{name}")
            except ModuleNotFoundError as e:
                if e.name != f"{self.__name__}.{name}":
                    raise
                raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}") from None
        setattr(self, name, value)  # later reads skip this function
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        # Importing a submodule binds its name on the package; where the package exports a function of that name
        # (``clmae.eval.finetune``), the function keeps it, as ``from .finetune import finetune`` made it.
        lazy = self.__dict__.get("_lazy", {})
        if isinstance(value, types.ModuleType) and name in lazy and value.__name__ == f"{self.__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self.__dict__.get("_lazy", {})})


def lazy_package(name: str, names: dict[str, str]) -> None:
    """Make the package ``name`` import each of ``names`` (name -> relative module, ``".trainer"``) on first use.

    Call it at the end of the package's ``__init__``, with ``__name__``.
    """
    module = sys.modules[name]
    module.__class__ = _LazyPackage
    module._lazy = dict(names)
