"""The app's side of the embedding worker: start it, ask for vectors, stop it.

torch may not be imported in the app's process (the import rules), so the model runs in
a child started by :mod:`app.workers.supervisor`; this client turns its events into
return values and exceptions for the one thread that asks. One worker serves a whole
add (and may serve a window's searches), so the model loads once.
"""

from __future__ import annotations

import itertools
import queue
import threading
from pathlib import Path
from typing import Any

import numpy as np

from app.docs import protocol as ep
from app.errors import HearthError
from app.machine.threads import ThreadClaims, auto_threads
from app.paths import HearthHome
from app.workers.lifecycle import Error, Log, WorkerDied
from app.workers.supervisor import Supervisor, WorkerSpec

QUERY_TEXTS = 4
"""Requests this small (a search's query) run on one thread. A query is a few
milliseconds of work; on a busy 2-core machine torch's second thread made it 25x slower
(606-736 ms against 21-25 ms, load 5.5: BENCHMARKS.md, "Documents"), waiting for a
core the other programs hold."""
START_TIMEOUT_S = 180.0  # torch and the model load in seconds; a loaded machine is slower
REQUEST_TIMEOUT_S = 600.0  # 256 passages take seconds; minutes means it is stuck


class EmbeddingError(HearthError):
    """The embedding worker could not start, failed, or died; the message says why."""


class Embedder:
    """Unit vectors for texts, from a worker process; a context manager that stops it."""

    def __init__(self, log_file: Path | None = None,
                 claims: ThreadClaims | None = None) -> None:
        """``claims``: the home's heavy processes, whose cores a batch leaves alone."""
        self.claims = claims
        self._events: queue.Queue[Any] = queue.Queue()
        self._ids = itertools.count(1)
        self._turn = threading.RLock()
        self.worker = Supervisor(
            WorkerSpec("backends.embedding.worker", name="embedding worker",
                       advice="Try again; if it keeps failing, run hearth doctor.",
                       protocol_version=ep.EMBED_PROTOCOL_VERSION, channel="pipe",
                       log_file=log_file),
            decode=lambda data: ep.decode_event(data.decode("utf-8")),
            encode=lambda command: ep.encode(command).encode("utf-8"),
            on_event=self._events.put, on_end=self._on_end)
        self.hello: ep.EmbedHello | None = None

    @classmethod
    def for_home(cls, home: HearthHome) -> Embedder:
        """The worker as a home runs it: its log in the home's logs, batches leaving
        the cores of the home's other heavy work (a fine-tune) alone."""
        return cls(home.logs / "embedding.log", ThreadClaims(home.busy))

    def start(self) -> ep.EmbedHello:
        with self._turn:
            if self.hello is not None and self.worker.alive:
                return self.hello
            while not self._events.empty():  # an earlier worker's last words
                self._events.get_nowait()
            self.worker.start()
            event = self._next(START_TIMEOUT_S, "start")
            if not isinstance(event, ep.EmbedHello):
                self.close()
                raise EmbeddingError(f"the embedding worker did not start: {_said(event)}")
            self.hello = event
            return event

    def embed(self, texts: list[str]) -> np.ndarray:
        """One unit vector per text, as rows; asked in requests of at most
        :data:`~app.docs.protocol.MAX_TEXTS` texts. Threads take turns (an add and a
        chat's search may share one worker): each answer is read by its asker."""
        with self._turn:
            hello = self.start()
            parts = [np.zeros((0, hello.dimensions), dtype=np.float32)]
            for at in range(0, len(texts), ep.MAX_TEXTS):
                request_id = str(next(self._ids))
                batch = texts[at:at + ep.MAX_TEXTS]
                threads = 1 if len(batch) <= QUERY_TEXTS else auto_threads(self.claims)
                self.worker.send(ep.Embed(request_id, batch, threads))
                event = self._next(REQUEST_TIMEOUT_S, "answer")
                if not isinstance(event, ep.Vectors) or event.request_id != request_id:
                    raise EmbeddingError(f"the embedding worker failed: {_said(event)}")
                parts.append(event.matrix())
            return np.concatenate(parts)

    def embed_query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self.embed([text])[0]
        return vector

    def close(self) -> None:
        self.worker.close(goodbye=ep.Shutdown())
        self.hello = None

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next(self, timeout: float, what: str) -> Any:
        """The next event that is not a log line; the worker's death is an event too."""
        while True:
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                self.worker.kill()
                raise EmbeddingError(f"the embedding worker gave no {what} in "
                                     f"{timeout:.0f} s and was stopped") from None
            if not isinstance(event, Log):
                return event

    def _on_end(self, died: WorkerDied | None) -> None:
        if died is not None:
            self._events.put(died)


def _said(event: Any) -> str:
    if isinstance(event, Error | WorkerDied):
        return event.message
    return f"unexpected {getattr(event, 'kind', type(event).__name__)!r}"
