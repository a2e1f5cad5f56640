"""The real local server over the real worker and a tiny model, for the transport tests.

The tiny GGUF (2 layers, SmolLM2's tokenizer) answers in milliseconds, so tests can ask
for hundreds of tokens, many requests, or a reply long enough to be interrupted, without
the starter model's cost. Raw-socket helpers speak HTTP the way misbehaving clients do.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.serve.documents import ServerDocuments
from app.serve.models import OwnModels
from app.serve.security import KEY_ENV
from app.serve.server import LocalServer
from app.workspace import Workspace, open_workspace
from tests.tiny_model import write_tiny_llama

TINY = "tiny-serve"
KEY = "hearth-test-key-0123456789abcdef"
PROMPT = [{"role": "user", "content": "Count with me."}]


class TinyServed:
    """A started :class:`LocalServer` on the tiny model, and what tests look at."""

    def __init__(self, server: LocalServer, client: InferenceClient) -> None:
        self.server, self.client = server, client
        self.api = openai.OpenAI(base_url=server.url, api_key=KEY, max_retries=0, timeout=60)
        self.done: dict[str, p.Done] = {}  # the worker's Done of every reply, by request id
        self.seen = threading.Event()  # set at each Tokens event
        self._lock = threading.Condition()
        client.add_tap(self._on_event)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, p.Tokens):
            self.seen.set()
        if isinstance(event, p.Done):
            with self._lock:
                self.done[event.request_id] = event
                self._lock.notify_all()

    def wait_done(self, count: int, timeout: float = 60) -> list[p.Done]:
        """The first ``count`` replies' Done events, in the order they ended."""
        with self._lock:
            self._lock.wait_for(lambda: len(self.done) >= count, timeout)
            return list(self.done.values())

    def normal_reply(self) -> str:
        """A plain request that must still be answered (the server and worker alive)."""
        reply = self.api.chat.completions.create(model=TINY, messages=PROMPT, max_tokens=2,
                                                 temperature=0)
        return reply.choices[0].finish_reason

    def connect(self, timeout: float = 60, rcvbuf: int | None = None) -> socket.socket:
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", self.server.port))
        return sock

    def post(self, body: dict[str, Any], timeout: float = 60, rcvbuf: int | None = None,
             path: str = "/v1/chat/completions") -> socket.socket:
        """Send a whole POST with the key; the caller reads (or does not)."""
        sock = self.connect(timeout, rcvbuf)
        data = json.dumps(body).encode()
        sock.sendall(head("POST", path, {"Content-Length": str(len(data))}) + data)
        return sock


def head(method: str, path: str, headers: dict[str, str], key: str = KEY,
         host: str = "127.0.0.1") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Authorization: Bearer {key}",
             *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes (a reset ends it too)."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    finally:
        sock.close()
    return data


def status_of(response: bytes) -> int:
    """The status code of a well-formed HTTP response (fails the test otherwise)."""
    line = response.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ", 2)
    assert len(parts) >= 2 and parts[0].startswith("HTTP/1.") and parts[1].isdigit(), \
        f"not an HTTP response: {response[:200]!r}"
    return int(parts[1])


def body_of(response: bytes) -> bytes:
    return response.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in response else b""


def ask(body: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"model": TINY, "messages": PROMPT, "max_tokens": 4, "temperature": 0,
            **(body or {}), **extra}


@contextmanager
def tiny_server(root: Path, documents: Callable[[Workspace], ServerDocuments] | None = None
                ) -> Iterator[TinyServed]:
    """A home with only the tiny model, its worker loaded, the server started (serving
    the home's documents through what ``documents`` makes of it)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv(KEY_ENV, raising=False)
        ws = open_workspace(root / "home", register_starter=False)
        ws.library.register(write_tiny_llama(root / "tiny.gguf"), TINY)
        client = InferenceClient(home=ws.home)
        try:
            host = OwnModels(ws, client)
            host.ready(TINY)
            server = LocalServer(host, KEY, port=0,
                                 documents=documents(ws) if documents else None)
            server.start()
            try:
                yield TinyServed(server, client)
            finally:
                server.stop()
        finally:
            client.close()
            ws.close()
