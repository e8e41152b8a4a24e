"""A loopback stand-in for the Hugging Face Hub's file endpoint, driven by the real ``huggingface_hub`` client.

It answers ``HEAD``/``GET /{org}/{repo}/resolve/{revision}/{path}`` as the Hub does for a file served without a
redirect: ``X-Repo-Commit`` (the commit the revision resolved to), ``ETag`` (quoted; the Hub uses the git blob id or
the LFS sha256), ``Content-Length``, ``Accept-Ranges`` and ranged ``GET``s; missing repositories, revisions and files
get the Hub's 404s with its ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``), which
is how ``huggingface_hub`` tells them apart. Every request is logged, so tests can assert that none was made.

Uploads: ``POST /api/repos/create``, ``POST /api/models/{repo}/preupload/{rev}`` and ``POST
/api/models/{repo}/commit/{rev}`` (the NDJSON commit with base64 file contents) are answered as the Hub answers them,
with one simplification: the preupload answer asks for every file as a "regular" (inline) upload, so the client never
takes the LFS/Xet path that the real Hub uses for large binary files.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote


class FakeHub:
    """Repositories held in memory: ``{repo_id: {commit: {path: bytes}}}`` plus branch refs."""

    def __init__(self) -> None:
        self.repos: dict[str, dict[str, dict[str, bytes]]] = {}
        self.refs: dict[str, dict[str, str]] = {}
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None

    # Content --------------------------------------------------------------------------------------------------
    def add_folder(self, repo_id: str, folder: str | Path, branch: str = "main") -> str:
        """Commit every file of ``folder`` to ``repo_id`` on ``branch``; returns the 40-hex commit id."""
        files = {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir()) if p.is_file()}
        return self.commit(repo_id, files, branch)

    def commit(self, repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
        """Add a commit holding exactly ``files``; returns its id (sha1 of the content, like a git id in form)."""
        h = hashlib.sha1(repo_id.encode())
        for name, data in sorted(files.items()):
            h.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        h.update(str(sum(len(c) for c in self.repos.get(repo_id, {}).values())).encode())
        commit = h.hexdigest()
        self.repos.setdefault(repo_id, {})[commit] = dict(files)
        self.refs.setdefault(repo_id, {})[branch] = commit
        return commit

    # Server ---------------------------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_HEAD(self) -> None:
                hub._answer(self, body=False)

            def do_GET(self) -> None:
                hub._answer(self, body=True)

            def do_POST(self) -> None:
                hub._post(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _error(self, h: BaseHTTPRequestHandler, code: int, error_code: str, message: str, commit: str | None) -> None:
        data = json.dumps({"error": message}).encode()
        h.send_response(code)
        h.send_header("X-Error-Code", error_code)
        h.send_header("X-Error-Message", message)
        if commit:
            h.send_header("X-Repo-Commit", commit)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    def _json(self, h: BaseHTTPRequestHandler, obj: object, code: int = 200) -> None:
        data = json.dumps(obj).encode()
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    @staticmethod
    def _validate_card(content: str) -> tuple[dict, int]:
        """A model card's YAML front matter must parse to a mapping with a string licence and list tags."""
        import yaml

        m = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            meta = yaml.safe_load(m.group(1)) if m else {}
        except yaml.YAMLError as e:
            return {"errors": [{"message": f"invalid YAML: {e}"}]}, 400
        errors = []
        if not isinstance(meta, dict):
            errors.append({"message": "metadata must be a mapping"})
        else:
            if "license" in meta and not isinstance(meta["license"], str):
                errors.append({"message": '"license" must be a string'})
            if "tags" in meta and not isinstance(meta["tags"], list):
                errors.append({"message": '"tags" must be an array'})
        warnings = [] if meta else [{"message": "empty or missing yaml metadata in repo card"}]
        return {"errors": errors, "warnings": warnings}, 400 if errors else 200

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?")[0]
        self.requests.append((h.command, path))
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        if path == "/api/validate-yaml":
            return self._json(h, *self._validate_card(json.loads(body)["content"]))
        if path == "/api/repos/create":
            req = json.loads(body)
            repo_id = f"{req['organization']}/{req['name']}" if req.get("organization") else req["name"]
            if repo_id not in self.repos:
                self.commit(repo_id, {})  # the Hub creates a repo with an initial commit
            return self._json(h, {"url": f"{self.endpoint}/{repo_id}", "name": repo_id})
        m = re.fullmatch(r"/api/models/([^/]+/[^/]+)/(preupload|commit)/([^/]+)", path)
        if m is None or m.group(1) not in self.repos:
            return self._error(h, 404, "RepoNotFound", "Repository not found", None)
        repo_id, action, branch = m.group(1), m.group(2), unquote(m.group(3))
        if action == "preupload":
            files = json.loads(body)["files"]
            return self._json(
                h, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]}
            )
        parent = self.refs[repo_id].get(branch)
        files = dict(self.repos[repo_id][parent]) if parent else {}
        for line in body.decode().splitlines():
            op = json.loads(line)
            if op["key"] == "file":
                files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
            elif op["key"] == "deletedFile":
                files.pop(op["value"]["path"], None)
            elif op["key"] != "header":
                return self._json(h, {"error": f"unsupported operation {op['key']}"}, 400)
        commit = self.commit(repo_id, files, branch)
        self._json(h, {"commitUrl": f"{self.endpoint}/{repo_id}/commit/{commit}", "commitOid": commit})

    def _answer(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        self.requests.append((h.command, h.path))
        m = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", h.path.split("?")[0])
        if m is None:
            return self._error(h, 404, "RepoNotFound", "Repository not found", None)
        repo_id, revision, filename = m.group(1), unquote(m.group(2)), unquote(m.group(3))
        if repo_id not in self.repos:
            return self._error(h, 404, "RepoNotFound", "Repository not found", None)
        commit = self.refs[repo_id].get(revision, revision)
        if commit not in self.repos[repo_id]:
            return self._error(h, 404, "RevisionNotFound", "Invalid rev id", None)
        files = self.repos[repo_id][commit]
        if filename not in files:
            return self._error(h, 404, "EntryNotFound", "Entry not found", commit)
        data = files[filename]
        start, end, status = 0, len(data), 200
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", h.headers.get("Range", ""))
        if body and rng:
            start = int(rng.group(1))
            end = int(rng.group(2)) + 1 if rng.group(2) else len(data)
            status = 206
        h.send_response(status)
        h.send_header("X-Repo-Commit", commit)
        h.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(end - start))
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        h.end_headers()
        if body:
            h.wfile.write(data[start:end])


def serve(monkeypatch, cache_dir: str | Path) -> FakeHub:
    """Start a :class:`FakeHub` and point ``huggingface_hub`` (and so timm) at it, with its cache in ``cache_dir``.

    Call ``hub.stop()`` when done (the fixtures in the test files do).
    """
    from huggingface_hub import constants

    hub = FakeHub().start()
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(
        constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    )
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache_dir))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    return hub


def go_offline(monkeypatch) -> None:
    """What a process started with ``HF_HUB_OFFLINE=1`` sees (huggingface_hub reads the variable at import)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


def make_cache(cache_dir: str | Path, repo_id: str, commit: str, folder: str | Path, ref: str = "main") -> Path:
    """Lay out a Hub cache by hand, as ``huggingface_hub`` does: ``models--org--name/{refs/<ref>, snapshots/<commit>}``.

    Files are plain copies rather than links to ``blobs/`` (the client reads snapshot paths either way).
    """
    root = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for p in Path(folder).iterdir():
        if p.is_file():
            (snap / p.name).write_bytes(p.read_bytes())
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / ref).write_text(commit)
    return snap
