"""The local OpenAI-compatible server on 127.0.0.1: ``/v1/models``,
``/v1/chat/completions``, ``/v1/completions``, and Hearth's ``/v1/hearth/search`` over
the home's document collections (the route table, :data:`_ROUTES`, lists them).

Standard library only (``ThreadingHTTPServer``, with the limits and graceful ends of
:mod:`app.serve.transport`): one thread per connection, and one request at a time at the
model (a lock held while the reply is made, so ``hearth serve`` can switch models between
requests safely and requests are answered in the order they came). Who may ask is
:mod:`app.serve.security`'s business; what is asked and answered,
:mod:`app.serve.openai_format`'s.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote

from app.inference import protocol as p
from app.serve import limits
from app.serve import openai_format as fmt
from app.serve.documents import ServerDocuments, sources_json
from app.serve.errors import ServeError
from app.serve.models import ModelHost, Replies
from app.serve.openai_tools import CallFilter, call_deltas
from app.serve.security import host_allowed, key_matches, origin_allowed
from app.serve.transport import ClientGone, GuardedHandler, GuardedServer

log = logging.getLogger("hearth.serve")
BIND = "127.0.0.1"  # never another interface: the key is the only other guard
DEFAULT_PORT = 8337
_DIGITS = re.compile(r"[0-9]{1,12}")
_STATUS_BY_ERROR = {"bad_request": 400, "no_model": 503, "out_of_memory": 503}


class LocalServer:
    """Serves ``host``'s model to clients that know ``key``; start() and stop() it."""

    def __init__(self, host: ModelHost, key: str, port: int = DEFAULT_PORT,
                 documents: ServerDocuments | None = None) -> None:
        """``documents``: the home's collections, for ``hearth_collections`` and
        ``/v1/hearth/search`` (None: those answer that documents are not served)."""
        self.host = host
        self.key = key
        self.documents = documents
        self.replies = Replies(host.client)
        self.turn = threading.Lock()  # one reply at a time; the others queue here
        self.httpd = GuardedServer((BIND, port), _Handler)
        self.httpd.hearth = self  # type: ignore[attr-defined]
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{BIND}:{self.port}/v1"

    def start(self) -> None:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hearth-serve",
                                        daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.replies.close()
        if self.documents is not None:
            self.documents.close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(GuardedHandler):
    """The API's endpoints (:data:`_ROUTES`), behind the Host check and the key."""

    @property
    def hearth(self) -> LocalServer:
        return self.server.hearth  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # base signature
        log.info("%s %s", self.address_string(), format % args)

    # ------------------------------------------------------------ plumbing

    def extra_headers(self) -> None:
        """CORS, for pages served from this machine only."""
        headers = getattr(self, "headers", None)  # absent when the request line was bad
        origin = headers.get("Origin") if headers is not None else None
        if origin_allowed(origin):
            self.send_header("Access-Control-Allow-Origin", origin or "")
            self.send_header("Vary", "Origin")

    def _guard(self, needs_key: bool = True) -> bool:
        """The Host check (DNS rebinding), then the key; answers and returns False
        when the request may not go on. Two Host headers are refused outright: which
        one a check reads and which one a proxy routes by need not be the same."""
        hosts = self.headers.get_all("Host") or []
        if len(hosts) > 1:
            self.send_json(400, ServeError(400, "more than one Host header").body())
            return False
        if not host_allowed(hosts[0] if hosts else None):
            self.send_json(403, ServeError(403, "this server answers only requests to "
                                           "localhost or 127.0.0.1", "permission_error").body())
            return False
        if needs_key and not key_matches(self.headers.get("Authorization"), self.hearth.key):
            self.send_json(401, ServeError(401, "a valid API key is required (Authorization: "
                                           "Bearer KEY; Hearth shows the key)",
                                           "authentication_error", "invalid_api_key").body())
            return False
        return True

    def _body(self) -> Any:
        """The JSON body, framed by exactly one plain ``Content-Length`` (review S9: a
        negative one read to the end of the stream, past the cap)."""
        if self.headers.get("Transfer-Encoding") is not None:
            raise ServeError(411, "send the body with a Content-Length; chunked request "
                             "bodies are not supported")
        lengths = self.headers.get_all("Content-Length") or []
        if not lengths:
            raise ServeError(411, "a request body with a Content-Length is required")
        if len(lengths) > 1 or not _DIGITS.fullmatch(lengths[0].strip(" \t")):
            raise ServeError(400, "bad Content-Length: it must be one number of bytes")
        length = int(lengths[0])
        if length > limits.MAX_BODY:
            raise ServeError(413, "the request is too large")
        data = self.rfile.read(length)
        if len(data) < length:
            raise ServeError(400, "the request body is shorter than its Content-Length")
        return _decode(data)

    # ------------------------------------------------------------- methods

    def do_OPTIONS(self) -> None:
        """A CORS preflight: browsers send it without the key."""
        if not self._guard(needs_key=False):
            return
        self.send_response(204)
        if origin_allowed(self.headers.get("Origin")):
            self.extra_headers()
            self.send_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Authorization, Content-Type")
            self.send_header("Access-Control-Max-Age", "600")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def _route(self, method: str) -> None:
        """The request to its endpoint (:data:`_ROUTES`), behind the Host check and the
        key; an endpoint's :class:`ServeError` becomes its OpenAI error body."""
        if not self._guard():
            return
        path = unquote(self.path.split("?", 1)[0].rstrip("/"))
        found = _find(method, path)
        if found is None:
            self.send_json(404, ServeError(404, f"no such endpoint: {path}").body())
            return
        endpoint, rest = found
        try:
            endpoint(self, rest)
        except ServeError as exc:
            self.answer_if_silent(exc)

    # ----------------------------------------------------------- endpoints
    # Each takes the part of the path after its route (a model's name, or "").

    def list_models(self, _: str) -> None:
        names = self.hearth.host.names()
        self.send_json(200, {"object": "list", "data": [_model(n) for n in names]})

    def get_model(self, name: str) -> None:
        if name not in self.hearth.host.names():
            raise ServeError(404, f"no such model: {name}", code="model_not_found")
        self.send_json(200, _model(name))

    def chat_completions(self, _: str) -> None:
        self._complete(self._body(), chat=True)

    def completions(self, _: str) -> None:
        self._complete(self._body(), chat=False)

    def search_documents(self, _: str) -> None:
        self.send_json(200, self._documents().search(self._body()))

    # ---------------------------------------------------------- completions

    def _complete(self, body: Any, chat: bool) -> None:
        server = self.hearth
        name = body.get("model") if isinstance(body, dict) else None
        base = server.host.sampling(name) if isinstance(name, str) and name else None
        request = fmt.parse(body, base or p.SamplingParams(), chat)
        reply = fmt.Reply(request.model, chat)
        with self._turn():
            server.host.ready(request.model)
            grounding = None
            if chat and body.get("hearth_collections") is not None:
                loaded = server.host.client.loaded
                grounding = self._documents().ground(
                    body, request.messages, loaded.n_ctx if loaded else 4096,
                    request.sampling.max_tokens)
            reply.sources = sources_json(grounding) if grounding is not None else None
            events = server.replies.ask(request.messages, request.sampling, request.raw,
                                        gone=self.client_gone, tools=request.tools.wire())
            if request.stream:
                options = body.get("stream_options")
                include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
                self._stream(reply, events, include_usage, CallFilter(request.tools))
                return
            try:
                done = _final(events)
            finally:
                events.close()
        # The next request need not wait for this.
        self.send_json(200, reply.whole(done, request.tools.read(done.text).calls))

    def _documents(self) -> ServerDocuments:
        if self.hearth.documents is None:
            raise ServeError(400, "this server does not serve documents (hearth serve "
                             "does)")
        return self.hearth.documents

    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """Wait in line for the model (one reply at a time); a client that hangs up
        while it waits leaves the line."""
        turn = self.hearth.turn
        deadline = time.monotonic() + limits.QUEUE_WAIT_S
        while not turn.acquire(timeout=max(0.0, min(limits.HANGUP_POLL_S,
                                                    deadline - time.monotonic()))):
            if self.client_gone():
                raise ClientGone
            if time.monotonic() >= deadline:
                raise ServeError(503, "the server is busy; try again later", "server_error")
        try:
            yield
        finally:
            turn.release()

    def _stream(self, reply: fmt.Reply, events: Any, include_usage: bool,
                calls: CallFilter) -> None:
        """Server-sent events, one per token batch, then the finish and ``[DONE]``."""
        try:
            first = next(events)
            if not isinstance(first, p.Tokens | p.Done):
                _final(iter([first]))  # raises the right ServeError before any byte is sent
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.extra_headers()
            self.end_headers()
            self._send_events(reply, _chain(first, events), include_usage, calls)
        finally:
            events.close()  # cancels the reply in the worker if it is still running

    def _send_events(self, reply: fmt.Reply, events: Any, include_usage: bool,
                     calls: CallFilter) -> None:
        """The stream's body. Once the headers are out, a reply that breaks off (the
        model stopped answering) ends with an error event and ``[DONE]``, never with
        a second HTTP answer written inside this one (review S10); a client that is
        gone or stopped reading ends it silently. Text that may be a tool call is held
        back by ``calls`` and sent, at the end, as calls or as the text it was."""
        try:
            try:
                self._send_event(reply.chunk("", first=True) if reply.chat else None)
                for event in events:
                    if isinstance(event, p.Tokens):
                        if text := calls.feed(event.text):
                            self._send_event(reply.chunk(text))
                    elif isinstance(event, p.Done):
                        held, made = calls.finish()
                        if held:
                            self._send_event(reply.chunk(held))
                        for delta in call_deltas(made):
                            self._send_event(reply.chunk("", delta_calls=delta))
                        self._send_event(reply.chunk(
                            "", "tool_calls" if made else event.stats.finish_reason))
                        if include_usage:
                            self._send_event({**reply.chunk(""), "choices": [],
                                              "usage": fmt.usage(event.stats)})
                    else:
                        self._send_event(_failure(event).body())
            except ServeError as exc:
                self._send_event(exc.body())
            self.wfile.write(b"data: [DONE]\n\n")
        except (OSError, ClientGone) as exc:
            log.info("the client went away or stopped reading (%s); its reply is "
                     "cancelled", type(exc).__name__)

    def _send_event(self, body: dict[str, Any] | None) -> None:
        if body is not None:
            self.wfile.write(b"data: " + json.dumps(body).encode("utf-8") + b"\n\n")
            self.wfile.flush()


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


def _final(events: Any) -> p.Done:
    """The reply's ``Done`` (the tokens are in it too), or the error it ended with."""
    for event in events:
        if isinstance(event, p.Done):
            return event
        if isinstance(event, p.Error | p.WorkerDied):
            raise _failure(event)
    raise ServeError(500, "the reply ended without an answer", "server_error")


def _failure(event: Any) -> ServeError:
    if isinstance(event, p.WorkerDied):
        return ServeError(503, f"the model worker stopped: {event.message}", "server_error")
    status = _STATUS_BY_ERROR.get(event.error_kind, 500)
    return ServeError(status, event.message,
                      "invalid_request_error" if status == 400 else "server_error")


def _decode(data: bytes) -> Any:
    """Parse a body; what Python cannot take (deep nesting, a lone surrogate that no
    UTF-8 can carry on to the worker) is a 400 here, not a dropped connection later."""
    try:
        body = json.loads(data or b"null")
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ServeError(400, "the request body is not valid JSON") from None
    except RecursionError:
        raise ServeError(400, "the request body is nested too deeply") from None
    except UnicodeEncodeError:
        raise ServeError(400, "the request contains a lone surrogate (such as \\ud800), "
                         "which is not text") from None
    return body


_ROUTES: dict[tuple[str, str], Callable[[_Handler, str], None]] = {
    ("GET", "/v1/models"): _Handler.list_models,
    ("GET", "/v1/models/"): _Handler.get_model,  # a prefix: the rest is the model's name
    ("POST", "/v1/chat/completions"): _Handler.chat_completions,
    ("POST", "/v1/completions"): _Handler.completions,
    ("POST", "/v1/hearth/search"): _Handler.search_documents,
}
"""Every endpoint: adding one is a method on the handler and a row here."""


def _find(method: str, path: str) -> tuple[Callable[[_Handler, str], None], str] | None:
    """The endpoint for ``path`` and the rest of the path after its route."""
    endpoint = _ROUTES.get((method, path))
    if endpoint is not None:
        return endpoint, ""
    for (verb, route), prefixed in _ROUTES.items():
        if verb == method and route.endswith("/") and path.startswith(route) \
                and len(path) > len(route):
            return prefixed, path[len(route):]
    return None


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "hearth"}
