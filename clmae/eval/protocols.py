"""The table of evaluation protocols (:data:`PROTOCOLS`): ``clmae eval`` builds one subcommand per entry, with its
help, and :func:`~clmae.eval.run.run_eval` dispatches through it.

A new protocol is a module with its config dataclass and its run function, plus one :func:`register_protocol` call
(or one entry below). This module imports no torch: a protocol names its config and its run function as
``"module:name"`` strings, imported when the protocol runs, so that ``clmae --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..data.spec import add_entry, load_ref


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    Attributes:
        name: the subcommand (``clmae eval NAME``) and the ``protocol`` of :func:`~clmae.eval.run.run_eval`.
        config: its options, a dataclass whose fields are ``key=value`` options, as the class or a ``"module:Name"``
            string.
        run: ``(context, config) -> (metrics, (train_size, val_size))``, where ``context`` is a
            :class:`~clmae.eval.run.EvalContext` (the model, the data, the preprocessing, the device, the common
            options and cached features); as the function or a ``"module:name"`` string.
        help: one line for ``clmae eval --help`` and the subcommand's description.
        needs_encoder: refuse ``raw-pixels`` (which has no encoder to train or probe).
    """

    name: str
    config: str | type
    run: str | Callable[..., Any]
    help: str
    needs_encoder: bool = False

    def config_class(self) -> type:
        """The config dataclass (imported now if named by a string)."""
        return load_ref(self.config)

    def run_function(self) -> Callable[..., Any]:
        """The run function (imported now if named by a string)."""
        return load_ref(self.run)

    @property
    def config_path(self) -> str:
        """The config class's dotted path, for help, without importing it."""
        if isinstance(self.config, str):
            return self.config.replace(":", ".")
        return f"{self.config.__module__}.{self.config.__qualname__}"


PROTOCOLS: dict[str, Protocol] = {}
"""Every protocol by name, in the order ``clmae eval --help`` lists them."""


def register_protocol(protocol: Protocol) -> Protocol:
    """Add ``protocol`` to :data:`PROTOCOLS` (a ``ValueError`` if its name is taken); returns it."""
    return add_entry(PROTOCOLS, protocol.name, protocol, "an evaluation protocol")


def unregister_protocol(name: str) -> None:
    """Remove the protocol ``name`` from :data:`PROTOCOLS`."""
    PROTOCOLS.pop(name)


def get_protocol(name: str) -> Protocol:
    """The protocol ``name``; a ``ValueError`` naming the registered ones otherwise."""
    if name not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {tuple(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]


for _protocol in (
    Protocol(
        "knn",
        "clmae.eval.run:KnnConfig",
        "clmae.eval.run:run_knn",
        "kNN on frozen features: CL-MAE's (k=5, Euclidean, majority vote) and weighted cosine (k=20, T=0.07)",
    ),
    Protocol(
        "linear",
        "clmae.eval.linear:LinearProbeConfig",
        "clmae.eval.run:run_linear",
        "linear probe as MAE (BatchNorm + linear, LARS, warm-up + cosine); mode=cached for the fast variant",
    ),
    Protocol(
        "finetune",
        "clmae.eval.finetune:FinetuneConfig",
        "clmae.eval.run:run_finetune",
        "fine-tuning as MAE (layer decay, drop-path, label smoothing, RandAugment, mixup/cutmix)",
        needs_encoder=True,
    ),
):
    register_protocol(_protocol)
