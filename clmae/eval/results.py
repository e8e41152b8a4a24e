"""The result of one evaluation run, as a JSON file that can be compared run to run."""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch

from .._atomic import write_text
from .._parse import parse_json
from .._version import __version__


def device_name(device: torch.device) -> str:
    """``"cpu (N threads, <processor>)"`` or ``"cuda:0 (<GPU name>)"``."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def versions() -> dict[str, str]:
    """Versions of clmae, torch and timm."""
    return {
        "clmae": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
    }


@dataclass
class EvalResult:
    """One evaluation run.

    Attributes:
        protocol: ``"knn"``, ``"linear"`` or ``"finetune"``.
        model: what was evaluated: ``spec``, ``kind``, ``arch``, and the weights' ``sha256`` (files) or
            ``init_seed`` (random initialisation).
        data: ``spec``, ``kind``, ``root``, ``fingerprint``, ``num_classes``, ``train_size``, ``val_size``.
        hparams: every hyper-parameter of the protocol, and the shared ones (limits, batch sizes).
        seed: the run's seed.
        metrics: accuracies as fractions in [0, 1]: ``top1`` (and ``top5`` where it applies); kNN reports one
            entry per vote (``reference``, ``weighted``).
        preprocessing: the evaluation transform's settings.
        device: where it ran.
        run_time_s: wall time of the whole run.
        features: feature-cache file and whether it was reused.
        versions: clmae / torch / timm / Python.
        date: UTC time the run finished.
    """

    protocol: str
    model: dict[str, Any]
    data: dict[str, Any]
    hparams: dict[str, Any]
    seed: int
    metrics: dict[str, Any]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    device: str = ""
    run_time_s: float = 0.0
    features: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=versions)
    date: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=_jsonable))

    def save(self, path: str | Path) -> Path:
        """Write the JSON file atomically (folders created; a failed write leaves an earlier file whole)."""
        return write_text(path, json.dumps(self.to_dict(), indent=2) + "\n", what="result JSON")


def is_result_file(path: str | Path) -> bool:
    """Whether ``path`` holds a result of ``clmae eval`` (a JSON object with its ``protocol``, ``metrics`` and
    ``versions``): a file that ``--out`` may replace without ``--overwrite``."""
    try:
        with open(path, "rb") as f:
            raw = f.read(1 << 24)  # results are a few kB: a bigger file is no result
        value = parse_json(raw, str(path))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(value, dict) and all(k in value for k in ("protocol", "metrics", "versions"))


def _jsonable(x: Any) -> Any:
    if isinstance(x, (Path, torch.device)):
        return str(x)
    if isinstance(x, tuple):
        return list(x)
    if isinstance(x, torch.Tensor):
        return x.tolist()
    raise TypeError(f"cannot write {type(x).__name__} to the result JSON")
