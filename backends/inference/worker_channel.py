"""The inference worker's end of its channel, and where its logs go.

:func:`connect` joins the supervisor's authenticated channel (:mod:`app.workers.supervisor`)
and sends the worker's warnings and errors there as ``Log`` events; :class:`LlamaLog` routes
llama.cpp's own C log into Python logging. Everything else the worker writes to stderr is
kept by the supervisor as the "last log lines" shown when the worker dies.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

import llama_cpp

from app.inference import protocol as p
from app.workers.spawn import connect_to_supervisor

# ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues a line).
_LLAMA_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING,
                 4: logging.ERROR}


class Channel:
    """The worker's end of the connection; sends are serialised by a lock."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()

    def send(self, message: Any) -> None:
        with self.lock:
            self.conn.send_bytes(p.encode(message))


class ForwardHandler(logging.Handler):
    """Sends warnings and errors to the client as ``Log`` events."""

    def __init__(self, channel: Channel) -> None:
        super().__init__(logging.WARNING)
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.channel.send(p.Log(record.levelname, record.getMessage()))


class LlamaLog:
    """Routes llama.cpp's C log into Python logging, joining continuation pieces."""

    def __init__(self) -> None:
        self.logger = logging.getLogger("llama.cpp")
        self.level = logging.INFO
        self.pending = ""
        # Kept on self: ctypes must not free the callback while llama.cpp holds it.
        self.callback = llama_cpp.llama_log_callback(self._on_log)
        llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))

    def _on_log(self, level: int, text: bytes, _user: ctypes.c_void_p) -> None:
        if level != 5:
            self.level = _LLAMA_LEVELS.get(level, logging.INFO)
        self.pending += text.decode("utf-8", errors="replace")
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.strip():
                self.logger.log(self.level, line)


def connect(address: str) -> Channel:
    """Connect to the app, log to stderr, and forward warnings and errors as events."""
    channel = Channel(connect_to_supervisor(address))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger().addHandler(ForwardHandler(channel))
    return channel
