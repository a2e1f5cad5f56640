"""A local stand-in for the Hugging Face hub, on 127.0.0.1 only.

It speaks the routes and headers huggingface_hub uses, so the real client code runs
against it unchanged (pointed there through ``HF_ENDPOINT``):

* ``GET /api/models?search=…`` — search, a JSON list;
* ``GET /api/models/{repo}[/revision/{rev}]`` — model info with ``siblings`` and, with
  ``?blobs=true``, each file's size and LFS ``sha256``;
* ``HEAD /{repo}/resolve/{rev}/{file}`` — ``ETag`` / ``X-Linked-Etag`` (the sha256),
  ``X-Linked-Size``, ``X-Repo-Commit``;
* ``GET /{repo}/resolve/{rev}/{file}`` — a 302 to ``/cdn/{sha256}``, as the hub sends
  large files to its CDN; the CDN honours ``Range`` with ``206 Partial Content``.

Tests shape failures through attributes: ``drop_after`` (close the connection after
that many body bytes, once), ``corrupt`` (flip a byte of what is served, not of what is
announced), ``throttle`` (seconds to sleep per chunk), ``require_token`` (401 without
``Authorization: Bearer <token>``), ``ignore_range`` (answer 200 with the whole file,
as some proxies do), ``short_body`` (send at most that many bytes of the file in a
clean, complete response whose ``Content-Length`` says so: a server that ends every
transfer early). ``requests`` records every request's method, path and ``Range`` header.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class Repo:
    repo_id: str
    files: dict[str, bytes]
    gated: bool = False
    downloads: int = 100
    likes: int = 5
    extra_files: dict[str, bytes] = field(default_factory=dict)  # non-LFS, e.g. README
    claimed_sizes: dict[str, int] = field(default_factory=dict)  # announce a size instead

    def size(self, name: str) -> int:
        return self.claimed_sizes.get(name, len(self.files[name]))

    def sha(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()


class FakeHub:
    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, str | None]] = []
        self.drop_after: int | None = None
        self.corrupt = False
        self.throttle = 0.0
        self.ignore_range = False
        self.short_body: int | None = None
        self.require_token: str | None = None
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def add_repo(self, repo_id: str, files: dict[str, bytes | Path], **kw: Any) -> Repo:
        data = {name: (Path(v).read_bytes() if isinstance(v, Path) else v)
                for name, v in files.items()}
        repo = Repo(repo_id, data, **kw)
        self.repos[repo_id] = repo
        return repo

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def range_requests(self) -> list[str]:
        """The ``Range`` headers of the file transfers (at the CDN, after the redirect)."""
        return [r for m, p, r in self.requests if m == "GET" and p.startswith("/cdn/") and r]

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake = hub

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name="fake-hub")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that pauses or cancels hangs up mid-transfer; that is the test's point.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # stdlib name
        pass

    # ------------------------------------------------------------- helpers

    def _json(self, body: Any, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(self, status: int, code: str, message: str) -> None:
        data = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _authorized(self) -> bool:
        token = self.fake.require_token
        return token is None or self.headers.get("Authorization") == f"Bearer {token}"

    # -------------------------------------------------------------- routes

    def do_HEAD(self) -> None:
        self._route()

    def do_GET(self) -> None:
        self._route()

    def _route(self) -> None:
        url = urlparse(self.path)
        path = unquote(url.path)
        self.fake.requests.append((self.command, path, self.headers.get("Range")))
        query = parse_qs(url.query)
        if path == "/api/models":
            return self._search(query)
        if path.startswith("/api/models/"):
            return self._model_info(path.removeprefix("/api/models/"), query)
        if path.startswith("/cdn/"):
            return self._cdn(path.removeprefix("/cdn/"))
        if "/resolve/" in path:
            return self._resolve(path)
        return self._error(404, "EntryNotFound", "not found")

    def _search(self, query: dict[str, list[str]]) -> None:
        words = (query.get("search") or [""])[0].lower()
        limit = int((query.get("limit") or ["1000"])[0])
        found = [r for r in self.fake.repos.values() if words in r.repo_id.lower()]
        found.sort(key=lambda r: -r.downloads)
        self._json([{"id": r.repo_id, "_id": r.repo_id, "downloads": r.downloads,
                     "likes": r.likes, "gated": r.gated, "tags": ["gguf"],
                     "lastModified": "2025-01-02T03:04:05.000Z", "library_name": "gguf",
                     "private": False} for r in found[:limit]])

    def _model_info(self, rest: str, query: dict[str, list[str]]) -> None:
        repo_id = rest.split("/revision/")[0]
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if repo.gated and not self._authorized():
            return self._error(401, "GatedRepo", "Access to this model is restricted")
        blobs = query.get("blobs") == ["true"] or query.get("blobs") == ["True"]
        siblings: list[dict[str, Any]] = []
        for name in repo.files:
            entry: dict[str, Any] = {"rfilename": name}
            if blobs:
                entry.update(size=repo.size(name), blobId="b" * 40,
                             lfs={"size": repo.size(name), "sha256": repo.sha(name),
                                  "pointerSize": 135})
            siblings.append(entry)
        for name, data in repo.extra_files.items():
            entry = {"rfilename": name}
            if blobs:
                entry.update(size=len(data), blobId="c" * 40)
            siblings.append(entry)
        self._json({"id": repo.repo_id, "_id": repo.repo_id, "sha": COMMIT,
                    "gated": repo.gated, "private": False, "downloads": repo.downloads,
                    "likes": repo.likes, "tags": ["gguf"], "siblings": siblings,
                    "lastModified": "2025-01-02T03:04:05.000Z"})

    def _resolve(self, path: str) -> None:
        repo_id, rest = path.lstrip("/").split("/resolve/", 1)
        _revision, _, filename = rest.partition("/")
        repo = self.fake.repos.get(repo_id)
        if repo is None:
            return self._error(404, "RepoNotFound", "Repository not found")
        if repo.gated and not self._authorized():
            return self._error(401, "GatedRepo", "Access to this model is restricted")
        if filename not in repo.files:
            return self._error(404, "EntryNotFound", "Entry not found")
        sha = repo.sha(filename)
        size = repo.size(filename)
        if self.command == "HEAD":
            self.send_response(200)
            self.send_header("ETag", f'"{sha}"')
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(size))
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            return None
        self.send_response(302)
        self.send_header("Location", f"/cdn/{repo_id}/{filename}?sig=abc")
        self.send_header("X-Linked-Etag", f'"{sha}"')
        self.send_header("X-Linked-Size", str(size))
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("Content-Length", "0")
        self.end_headers()
        return None

    def _cdn(self, rest: str) -> None:
        for repo in self.fake.repos.values():
            if rest.startswith(repo.repo_id + "/"):
                filename = rest.removeprefix(repo.repo_id + "/")
                if filename in repo.files:
                    return self._serve(repo.files[filename])
        return self._error(404, "EntryNotFound", "not found")

    def _serve(self, data: bytes) -> None:
        if self.fake.corrupt:
            data = data[:-1] + bytes([data[-1] ^ 0xFF])
        start, status = 0, 200
        ranged = self.headers.get("Range")
        if ranged and ranged.startswith("bytes=") and not self.fake.ignore_range:
            first = ranged.removeprefix("bytes=").split("-")[0]
            start = int(first)
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        body = data[start:]
        if self.fake.short_body is not None:
            body = body[:max(0, self.fake.short_body - start)]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        drop, self.fake.drop_after = self.fake.drop_after, None
        sent = 0
        step = 8192
        while sent < len(body):
            if drop is not None and sent >= drop:
                self.close_connection = True
                self.connection.shutdown(2)  # the connection drops mid-body
                return
            piece = body[sent:sent + step]
            try:
                self.wfile.write(piece)
            except OSError:
                return
            sent += len(piece)
            if self.fake.throttle:
                time.sleep(self.fake.throttle)


@pytest.fixture
def fake_hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A started :class:`FakeHub`, with ``HF_ENDPOINT`` pointing at it and no token."""
    hub = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    try:
        yield hub
    finally:
        hub.stop()
