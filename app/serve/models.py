"""Which model the server answers with, and how its replies reach the request's thread.

The server never loads a second copy of a model: it sends its requests through the
same :class:`~app.inference.client.InferenceClient` as the chat (in the app) or through
one of its own (``hearth serve``). The worker answers requests in the order they came,
so a server request waits behind a chat turn and the other way round. The client's
events go to every listener; :class:`Replies` taps them and picks out its own request
ids (which it chooses itself, so it listens before the first event can arrive).
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, Protocol

from app.inference import protocol as p
from app.inference.client import InferenceClient, WorkerError
from app.models.library import LibraryError, UnknownModel
from app.models.live import plan_load
from app.serve import limits
from app.serve.errors import ServeError
from app.serve.transport import ClientGone
from app.workspace import Workspace

LOAD_TIMEOUT_S = 300.0


class ModelHost(Protocol):
    """What the server needs from whoever owns the model (the app's chat, or the CLI)."""

    client: InferenceClient

    def names(self) -> list[str]:
        """The library names a request may ask for."""

    def sampling(self, name: str) -> p.SamplingParams:
        """The sampling a request starts from (the model's remembered settings)."""

    def ready(self, name: str) -> None:
        """Make ``name`` the model that answers next, or raise :class:`ServeError`."""


class Replies:
    """The server's requests through a shared client, each with its own event queue."""

    def __init__(self, client: InferenceClient) -> None:
        self.client = client
        self._queues: dict[str, queue.Queue[Any]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._prefix = f"serve-{id(self):x}-"
        client.add_tap(self._on_event)

    def close(self) -> None:
        """Stop listening; a reply still waited for is cancelled and ends with an error."""
        self.client.remove_tap(self._on_event)
        with self._lock:
            waiting = dict(self._queues)
        for request_id, events in waiting.items():
            with contextlib.suppress(WorkerError):
                self.client.cancel(request_id)
            events.put(p.Error("server_stopped", "the server was stopped", request_id))

    def _on_event(self, event: Any) -> None:
        with self._lock:
            if isinstance(event, p.WorkerDied):
                targets = list(self._queues.values())
            else:
                found = self._queues.get(getattr(event, "request_id", None) or "")
                targets = [found] if found is not None else []
        for target in targets:
            target.put(event)

    def ask(self, messages: list[dict[str, str]], sampling: p.SamplingParams,
            raw: bool = False, gone: Callable[[], bool] | None = None,
            timeout: float | None = None, tools: str = "") -> Generator[Any, None, None]:
        """Yield the reply's ``Tokens`` and, last, its ``Done``, ``Error`` or
        ``WorkerDied``. Closing the iterator early cancels the reply in the worker.

        ``gone`` tells whether the asker's client has hung up; it is checked at every
        event and every :data:`limits.HANGUP_POLL_S` between them, and ends the reply
        with :class:`ClientGone`. ``timeout`` (default :data:`limits.REPLY_IDLE_S`) is
        the longest wait for the *next* event: a long reply that keeps coming is never
        cut, a worker that stopped answering is (504)."""
        idle = limits.REPLY_IDLE_S if timeout is None else timeout
        request_id = f"{self._prefix}{next(self._ids)}"
        events: queue.Queue[Any] = queue.Queue()
        with self._lock:
            self._queues[request_id] = events
        finished = False
        try:
            if gone is not None and gone():
                finished = True  # nothing was asked of the worker
                raise ClientGone
            self.client.chat(messages, sampling, raw=raw, request_id=request_id, tools=tools)
            while True:
                event = _next_event(events, idle, gone)
                if isinstance(event, p.Tokens):
                    yield event
                elif isinstance(event, p.Done | p.Error | p.WorkerDied):
                    finished = True
                    yield event
                    return
        except WorkerError as exc:
            finished = True
            raise ServeError(503, f"the model is not running: {exc}", "server_error") from None
        finally:
            with self._lock:
                self._queues.pop(request_id, None)
            if not finished:
                with contextlib.suppress(WorkerError):
                    self.client.cancel(request_id)


def _next_event(events: queue.Queue[Any], idle: float, gone: Callable[[], bool] | None
                ) -> Any:
    """The reply's next event; ``ClientGone`` once the client has hung up, 504 after
    ``idle`` seconds without one."""
    deadline = time.monotonic() + idle
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ServeError(504, f"the model did not answer in time (nothing from it for "
                             f"{idle:.0f} s)", "server_error")
        try:
            event = events.get(timeout=min(left, limits.HANGUP_POLL_S) if gone else left)
        except queue.Empty:
            event = None
        if gone is not None and gone():
            raise ClientGone
        if event is not None:
            return event


class OwnModels:
    """``hearth serve``: a worker of its own, loading the library model a request names
    (a tuned model as its base plus live adapter when it can, like the chat)."""

    def __init__(self, workspace: Workspace, client: InferenceClient) -> None:
        self.workspace = workspace
        self.client = client
        self.current: str | None = None

    def names(self) -> list[str]:
        return [record.name for record in self.workspace.library.list()]

    def sampling(self, name: str) -> p.SamplingParams:
        return self.workspace.settings.sampling_for(name)

    def ready(self, name: str) -> None:
        if name == self.current and self.client.loaded is not None:
            return
        try:
            record = self.workspace.library.get(name)
        except UnknownModel:
            raise ServeError(404, f"there is no model {name!r} in the library (see GET "
                             "/v1/models)", code="model_not_found") from None
        loaded = self.client.loaded.path if self.client.loaded is not None else None
        try:
            plan = plan_load(record, self.workspace.library, loaded)
        except LibraryError as exc:  # a live-only version whose base is gone
            raise ServeError(409, str(exc), code="model_not_available") from None
        self.current = None
        load = self.workspace.settings.load
        if not plan.switch_only:
            self._wait(lambda: self.client.load(
                plan.path, n_ctx=load.n_ctx, n_gpu_layers=load.n_gpu_layers,
                n_threads=load.n_threads, flash_attn=load.flash_attn,
                template=self.workspace.settings.template_for(name),
                cache_type=load.cache_type, prompt_lookup=load.prompt_lookup), p.Loaded)
        if plan.adapter is not None or plan.switch_only:
            self._wait(lambda: self.client.set_adapter(plan.adapter), p.AdapterSet)
        self.current = name

    def _wait(self, command: Callable[[], None], done: type) -> None:
        """Run ``command`` and wait for its ``done`` event (or the reason it failed)."""
        events: queue.Queue[Any] = queue.Queue()

        def tap(event: Any) -> None:
            if isinstance(event, done | p.WorkerDied) or (
                    isinstance(event, p.Error) and event.request_id is None):
                events.put(event)

        self.client.add_tap(tap)
        try:
            if not self.client.alive:
                self.client.start()
            command()
            event = events.get(timeout=LOAD_TIMEOUT_S)
        except (WorkerError, queue.Empty) as exc:
            raise ServeError(503, f"the model could not be loaded: {exc}",
                             "server_error") from None
        finally:
            self.client.remove_tap(tap)
        if not isinstance(event, done):
            raise ServeError(503, f"the model could not be loaded: {event.message}",
                             "server_error")


class ChatModel:
    """The app: the server answers with the model the chat has loaded, through the
    chat's own client (one copy in memory). It never switches the chat's model: the
    person chose it, and a request from elsewhere must not change what they see."""

    def __init__(self, workspace: Workspace, client: InferenceClient,
                 current: Callable[[], str | None]) -> None:
        """``current`` names the chat's ready model (None while none is ready)."""
        self.workspace = workspace
        self.client = client
        self.current = current

    def names(self) -> list[str]:
        return [record.name for record in self.workspace.library.list()]

    def sampling(self, name: str) -> p.SamplingParams:
        return self.workspace.settings.sampling_for(name)

    def ready(self, name: str) -> None:
        current = self.current()
        if current is None:
            raise ServeError(503, "no model is ready in Hearth: load one in the chat",
                             "server_error", "model_not_loaded")
        if name != current:
            if name not in self.names():
                raise ServeError(404, f"there is no model {name!r} in the library (see GET "
                                 "/v1/models)", code="model_not_found")
            raise ServeError(409, f"Hearth's chat has {current!r} loaded: ask for it, or "
                             f"choose {name!r} in the chat", code="model_not_loaded")
