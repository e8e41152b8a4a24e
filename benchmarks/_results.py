"""Where benchmark results go: one JSON file per run under ``benchmarks/results/`` (or ``--out``)."""

import json
from datetime import datetime, timezone
from pathlib import Path


def write_result(result: dict, out: str | Path, stem: str) -> Path:
    """Write ``result`` to ``out/{stem}_{UTC time}.json`` and say where."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}_{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return path
