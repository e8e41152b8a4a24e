"""Every ```python and ```bash block of README.md, MODEL_CARD.md and docs/*.md runs as written.

The blocks of one document run in order in one fresh folder (Python blocks share one namespace, as a reader running
them one after the other would), with this checkout's clmae first on PYTHONPATH, ``HF_HUB_OFFLINE=1`` and the
checkout's ``examples/`` and ``docs/`` linked in. A block that cannot run here (a GPU, the Hub, ImageNet, many
nodes, minutes of training) carries ``<!-- not run: REASON -->`` on the line before its fence; the reason is
required. The convention is in docs/testing.md.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "MODEL_CARD.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_LANGS = {"python", "bash"}
SHELL_TAGS = {"sh", "shell", "console", "zsh"}  # must be spelled bash, so that no command escapes the check
SKIP = re.compile(r"^<!--\s*not run(?::\s*(?P<reason>.*?))?\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
LINKED = ("examples", "docs")  # read-only inputs the snippets name by relative path


@dataclass
class Block:
    """One fenced block: where it is, its language, its code and, if skipped, why."""

    where: str
    lang: str
    code: str
    skip: str | None


def parse(text: str, name: str) -> list[Block]:
    """The fenced blocks of a markdown ``text``, each with its ``<!-- not run: ... -->`` reason if it has one.

    Raises:
        ValueError: a ``not run`` marker with no reason, a marker that is not right before a block, a shell block
            tagged other than ``bash``, or an unclosed fence.
    """
    lines = text.splitlines()
    blocks, pending, i = [], None, 0
    while i < len(lines):
        line = lines[i].strip()
        skip = SKIP.match(line)
        fence = FENCE.match(lines[i])
        if skip:
            reason = (skip.group("reason") or "").strip()
            if len(reason) < 8:
                raise ValueError(f"{name}:{i + 1}: a 'not run' marker needs a reason: <!-- not run: needs a GPU -->")
            pending = (i + 1, reason)
        elif fence:
            lang = fence.group("lang").lower()
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence.group("fence"))), None)
            if end is None:
                raise ValueError(f"{name}:{i + 1}: unclosed code fence")
            if lang in SHELL_TAGS:
                raise ValueError(f"{name}:{i + 1}: tag shell blocks ```bash (not ```{lang}) so that they are run")
            if pending and lang not in RUN_LANGS:
                raise ValueError(f"{name}:{pending[0]}: 'not run' marker before a ```{lang} block, which never runs")
            indent = len(fence.group("indent"))
            code = "\n".join(x[indent:] for x in lines[i + 1 : end])
            blocks.append(Block(f"{name}:{i + 1}", lang, code, pending[1] if pending else None))
            pending, i = None, end
        elif line and pending:
            raise ValueError(f"{name}:{pending[0]}: a 'not run' marker must be right before its code block")
        i += 1
    if pending:
        raise ValueError(f"{name}:{pending[0]}: a 'not run' marker must be right before its code block")
    return blocks


# One process for every document (torch is imported once): each document's blocks run in order in its own folder,
# Python blocks exec'd in one namespace per document, bash blocks through bash -e. A failure is reported and the next
# document still runs.
DRIVER = """
import json, os, subprocess, sys, time, traceback
failed = []
for doc in json.load(open(sys.argv[1])):
    os.chdir(doc["folder"])
    ns = {"__name__": "__main__"}
    for b in doc["blocks"]:
        start = time.perf_counter()
        if b["lang"] == "python":
            try:
                exec(compile(b["code"], b["where"], "exec"), ns)
                ok = True
            except BaseException:
                traceback.print_exc()
                ok = False
        else:
            ok = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", b["code"]]).returncode == 0
        took = time.perf_counter() - start
        print(f"--- {b['where']} ({b['lang']}): {'ok' if ok else 'FAILED'}, {took:.1f} s", flush=True)
        if not ok:
            failed.append(b["where"])
            break
sys.exit(f"FAILED: {', '.join(failed)}" if failed else 0)
"""


def _runnable(doc: Path) -> list[Block]:
    return [b for b in parse(doc.read_text(), doc.relative_to(ROOT).as_posix()) if b.lang in RUN_LANGS]


@pytest.mark.slow
@pytest.mark.integration
def test_doc_snippets_run(tmp_path: Path):
    docs = []
    for doc in DOCS:
        blocks = [b.__dict__ for b in _runnable(doc) if b.skip is None]
        if blocks:
            work = tmp_path / doc.relative_to(ROOT).as_posix().replace("/", "_")
            work.mkdir()
            for name in LINKED:
                (work / name).symlink_to(ROOT / name)
            docs.append({"folder": str(work), "blocks": blocks})
    (tmp_path / "blocks.json").write_text(json.dumps(docs))
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),  # nothing cached: a snippet that needs the Hub fails here
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "blocks.json")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    ran = [line for line in proc.stdout.splitlines() if line.startswith("--- ")]
    assert len(ran) == sum(len(d["blocks"]) for d in docs) and all(
        line.split(": ")[-1].startswith("ok") for line in ran
    )


def test_every_document_is_checked_and_skips_are_few():
    blocks = [b for doc in DOCS for b in _runnable(doc)]
    names = {b.where.split(":")[0] for b in blocks}
    assert {"README.md", "MODEL_CARD.md", "docs/data.md", "docs/api.md"} <= names
    ran = [b for b in blocks if b.skip is None]
    assert len(ran) >= 10, [b.where for b in ran]
    for b in blocks:  # every skip says why, in words
        assert b.skip is None or len(b.skip.split()) >= 2, b.where


def test_readme_starts_with_exactly_two_setup_commands():
    first = parse((ROOT / "README.md").read_text(), "README.md")[0]
    commands = [line.split("#")[0].strip() for line in first.code.splitlines() if line.split("#")[0].strip()]
    assert first.lang == "bash" and commands == ["make demo", "make test"]


def test_parse_reads_skips_and_refuses_a_skip_without_reason():
    text = "x\n<!-- not run: needs a GPU -->\n```bash\nnvidia-smi\n```\n\n```python\nprint(1)\n```\n```text\nz\n```\n"
    blocks = parse(text, "t.md")
    assert [(b.where, b.lang, b.code, b.skip) for b in blocks] == [
        ("t.md:3", "bash", "nvidia-smi", "needs a GPU"),
        ("t.md:7", "python", "print(1)", None),
        ("t.md:10", "text", "z", None),
    ]
    for bad, message in (
        ("<!-- not run -->\n```bash\nls\n```\n", "needs a reason"),
        ("<!-- not run:   -->\n```bash\nls\n```\n", "needs a reason"),
        ("<!-- not run: needs a GPU -->\nsome prose\n```bash\nls\n```\n", "right before"),
        ("<!-- not run: needs a GPU -->\n", "right before"),
        ("```sh\nls\n```\n", "tag shell blocks"),
        ("```python\nprint(1)\n", "unclosed"),
    ):
        with pytest.raises(ValueError, match=message):
            parse(bad, "t.md")
