"""The HTTP transport under the local server: connections, their limits, their ends.

``http.server`` alone trusts its clients: no cap on connections, no timeout on reads
or writes, a traceback and no answer when a handler fails, and a reset instead of the
answer when a client's body was not read. Review S3/S4/S10 showed each of these
wedging or starving the server (and, in the app, the GUI process that hosts it). Here:

- :class:`GuardedServer` caps open connections (the next is answered 503 at once, from
  the accept thread, without a thread of its own), backs off when the process is out
  of descriptors, and closes each connection gracefully (lingering), so an answer sent
  before the client finished sending still reaches it;
- :class:`GuardedHandler` gives each request a deadline to arrive (408 after it),
  bounds each write (a client that stops reading is a client that has gone), always
  answers with a JSON error when something fails before the answer began, and tells
  whether its client has hung up (:meth:`GuardedHandler.client_gone`).

The numbers are in :mod:`app.serve.limits`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import socket
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from app.serve import limits
from app.serve.errors import ServeError

log = logging.getLogger("hearth.serve")
_OUT_OF_DESCRIPTORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class RequestTooSlow(Exception):
    """The request did not arrive within :data:`limits.REQUEST_READ_S`.

    Not a ``TimeoutError``: ``http.server`` swallows those without an answer, and this
    one is answered 408."""


class ClientGone(Exception):
    """The client hung up (or stopped reading) while its reply was being made."""


class _DeadlineReader(io.RawIOBase):
    """The socket's reading side with one deadline for all of the request: each read
    may wait only for what is left of it, so dribbling a byte at a time does not help."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise RequestTooSlow
        self._sock.settimeout(left)
        try:
            return self._sock.recv_into(buffer)
        except TimeoutError:
            raise RequestTooSlow from None


class GuardedHandler(BaseHTTPRequestHandler):
    """One connection, one request (HTTP/1.0), every way out of it an HTTP answer."""

    server_version = "Hearth"
    protocol_version = "HTTP/1.0"  # one request per connection; streams end at close

    def setup(self) -> None:
        super().setup()
        self.started = False  # the status line has been sent: no other answer may follow
        # What an answer needs before the request line is parsed (a 408 may come first).
        self.requestline, self.command, self.request_version = "", "", "HTTP/1.0"
        self.rfile.close()  # replaced by one that keeps the whole request to a deadline
        deadline = time.monotonic() + limits.REQUEST_READ_S
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, deadline))

    def handle_one_request(self) -> None:
        """``http.server``'s, with an answer for the failures it leaves unanswered."""
        try:
            super().handle_one_request()
        except RequestTooSlow:
            self.answer_if_silent(ServeError(408, "the request took too long to arrive"))
        except ClientGone:
            log.info("the client went away; its reply was cancelled")
        except OSError as exc:  # the connection broke while answering
            log.info("the connection ended early: %s", exc)
        except Exception:  # a bug: say so to the client, keep the details in the log
            log.exception("the server failed on %r", self.requestline)
            self.answer_if_silent(ServeError(500, "the server failed on this request (details "
                                             "are in Hearth's log)", "server_error"))
        self.close_connection = True

    def send_response(self, code: int, message: str | None = None) -> None:
        """From the first byte of the answer on, a write may wait only so long for a
        client that has stopped reading (then ``TimeoutError``)."""
        self.started = True
        self.connection.settimeout(limits.WRITE_STALL_S)
        super().send_response(code, message)

    def send_error(self, code: int, message: str | None = None,
                   explain: str | None = None) -> None:
        """``http.server``'s own refusals (a malformed request line, too many headers, an
        unknown method) as the same JSON error every other answer uses."""
        text = message or explain or HTTPStatus(code).phrase
        self.log_error("code %d, message %s", code, text)
        self.send_json(code, ServeError(code, text).body())

    def send_json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="hearth"')
        if status == 503:
            self.send_header("Retry-After", "1")
        self.extra_headers()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def extra_headers(self) -> None:
        """Headers every answer carries (the server adds CORS here)."""

    def answer_if_silent(self, error: ServeError) -> None:
        """Answer with ``error`` unless an answer has begun (a second one would be
        written into the first); a client already gone is no error."""
        if not self.started:
            with contextlib.suppress(OSError):
                self.send_json(error.status, error.body())

    def client_gone(self) -> bool:
        """Whether the client has closed its end (or reset it). Data it sent after the
        request is no sign; only end-of-stream is. A client that half-closes after its
        request counts as gone too: HTTP gives no way to tell the two apart."""
        sock = self.connection
        timeout = sock.gettimeout()
        try:
            sock.settimeout(0.0)  # a look, never a wait (select() fails past fd 1023)
            return sock.recv(1, socket.MSG_PEEK) == b""
        except BlockingIOError:
            return False  # nothing to read: still there
        except OSError:
            return True  # reset
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(timeout)


class GuardedServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` with a cap on connections and graceful closes."""

    daemon_threads = True
    request_queue_size = 64  # connections waiting for accept: a burst is not refused

    def __init__(self, address: tuple[str, int], handler: type[GuardedHandler]) -> None:
        self.active = 0  # connections with a thread of their own
        self._count = threading.Lock()
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in _OUT_OF_DESCRIPTORS:  # the listen socket stays readable:
                time.sleep(limits.ACCEPT_BACKOFF_S)  # without a pause, a busy loop
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._count:
            full = self.active >= limits.MAX_CONNECTIONS
            if not full:
                self.active += 1
        if full:
            _refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except RuntimeError:  # no thread could be started: refuse, as when full
            self._release()
            _refuse(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._count:
            self.active -= 1

    def shutdown_request(self, request: Any) -> None:
        """End the answer (FIN), read and drop what the client still sends, then close:
        closing with unread bytes would reset the connection and lose the answer."""
        with contextlib.suppress(OSError):
            request.shutdown(socket.SHUT_WR)
        _linger(request)
        self.close_request(request)


def _linger(sock: socket.socket) -> None:
    deadline = time.monotonic() + limits.LINGER_S
    budget = limits.LINGER_BYTES
    with contextlib.suppress(OSError):
        while budget > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            sock.settimeout(left)
            data = sock.recv(min(65536, budget))
            if not data:
                return
            budget -= len(data)


_BUSY = json.dumps(ServeError(503, "the server has too many connections open; try again "
                              "shortly", "server_error").body()).encode("utf-8")
_BUSY_RESPONSE = (b"HTTP/1.0 503 Service Unavailable\r\nServer: Hearth\r\n"
                  b"Content-Type: application/json\r\nRetry-After: 1\r\n"
                  b"Content-Length: " + str(len(_BUSY)).encode() + b"\r\n\r\n" + _BUSY)


def _refuse(sock: socket.socket) -> None:
    """Answer 503 and close, on the accept thread, without ever blocking it: what the
    client already sent is read first, so the close does not reset the answer away."""
    with contextlib.suppress(OSError):
        sock.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            sock.recv(65536)
        sock.send(_BUSY_RESPONSE)
        sock.shutdown(socket.SHUT_WR)
    sock.close()
