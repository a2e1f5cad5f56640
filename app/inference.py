"""The client side of the inference worker: start it, talk to it, survive its death.

:class:`InferenceClient` starts ``backends.llama_worker`` as a child process (by module
name, so this process never imports llama.cpp), connects over an authenticated local
channel (a Unix socket or a Windows named pipe, never TCP), and turns everything the
worker says into :mod:`app.protocol` events. When the worker exits unexpectedly — an
abort in llama.cpp, a segfault, ``kill -9``, out of memory — the client reports a
:class:`~app.protocol.WorkerDied` event with the exit code or signal and the last lines
the worker wrote, and :meth:`InferenceClient.restart` starts a fresh one.

Events reach the caller through ``listener`` (called on the client's reader thread; the
Qt adapter re-emits them as signals) or, when no listener is given, through
``client.events``, a queue that the blocking helpers below consume.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import Any

from app import protocol as p

log = logging.getLogger("hearth.inference")
Listener_ = Callable[[Any], None]
_LOG_TAIL = 40


class WorkerError(RuntimeError):
    """A request failed; ``event`` is the ``Error`` or ``WorkerDied`` that said why."""

    def __init__(self, event: Any) -> None:
        super().__init__(event.message)
        self.event = event


class InferenceClient:
    def __init__(self, listener: Listener_ | None = None, start_timeout: float = 60.0,
                 log_file: Path | None = None) -> None:
        self.listener = listener
        self.events: queue.Queue[Any] = queue.Queue()
        self.start_timeout = start_timeout
        self.log_file = log_file
        self.hello: p.Hello | None = None
        self.loaded: p.Loaded | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._send_lock = threading.Lock()
        self._log_tail: collections.deque[str] = collections.deque(maxlen=_LOG_TAIL)
        self._ids = itertools.count(1)
        self._closing = False
        self._died_reported = False

    # ------------------------------------------------------------ lifecycle

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> p.Hello:
        """Start the worker process and wait for its ``Hello``."""
        if self.alive:
            assert self.hello is not None
            return self.hello
        self._closing = False
        self._died_reported = False
        self.loaded = None
        self._log_tail.clear()
        authkey = os.urandom(32)
        listener = Listener(authkey=authkey)  # AF_UNIX / AF_PIPE: local only
        env = dict(os.environ, HEARTH_WORKER_AUTHKEY=authkey.hex(), PYTHONUNBUFFERED="1")
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backends.llama_worker", str(listener.address)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=env, cwd=root)
        threading.Thread(target=self._pump_output, args=(self.proc,), daemon=True,
                         name="worker-output").start()
        try:
            self._conn = self._accept(listener)
        finally:
            listener.close()
        first = p.decode(self._conn.recv_bytes())
        if not isinstance(first, p.Hello) or first.protocol_version != p.PROTOCOL_VERSION:
            self.close()
            raise WorkerError(p.Error("protocol", f"the worker speaks protocol "
                                      f"{getattr(first, 'protocol_version', '?')}, this "
                                      f"app speaks {p.PROTOCOL_VERSION}; reinstall Hearth"))
        self.hello = first
        threading.Thread(target=self._read_events, args=(self._conn, self.proc), daemon=True,
                         name="worker-events").start()
        return first

    def _accept(self, listener: Listener) -> Connection:
        """Accept the worker's connection, giving up if it dies or stalls first."""
        result: dict[str, Any] = {}

        def accept() -> None:
            try:
                result["conn"] = listener.accept()
            except (OSError, EOFError) as exc:
                result["error"] = exc

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        deadline = time.monotonic() + self.start_timeout
        while thread.is_alive():
            thread.join(0.05)
            assert self.proc is not None
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
        if "conn" in result:
            return result["conn"]
        self.kill()
        tail = "\n".join(self._log_tail) or "(no output)"
        raise WorkerError(p.Error("start_failed", f"the inference worker did not start:\n{tail}"))

    def restart(self) -> p.Hello:
        self.close()
        return self.start()

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``timeout``."""
        self._closing = True
        if self.alive:
            with contextlib.suppress(WorkerError):
                self._send(p.Shutdown())
            assert self.proc is not None
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self.loaded = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # -------------------------------------------------------------- commands

    def _send(self, message: Any) -> None:
        if self._conn is None or not self.alive:
            raise WorkerError(p.Error("not_running", "the inference worker is not running"))
        with self._send_lock:
            try:
                self._conn.send_bytes(p.encode(message))
            except (OSError, ValueError) as exc:
                raise WorkerError(p.Error("not_running", f"the worker is gone: {exc}")
                                  ) from exc

    def load(self, path: str | Path, n_ctx: int = 4096, n_gpu_layers: int = 0,
             n_threads: int | None = None, flash_attn: bool = False) -> None:
        if not self.alive:
            self.start()
        self.loaded = None
        self._send(p.Load(str(path), n_ctx, n_gpu_layers, n_threads, flash_attn))

    def chat(self, messages: list[dict[str, str]], sampling: p.SamplingParams | None = None,
             continue_last: bool = False) -> str:
        request_id = f"r{next(self._ids)}"
        self._send(p.Chat(request_id, messages, sampling or p.SamplingParams(), continue_last))
        return request_id

    def cancel(self, request_id: str) -> None:
        if self.alive:
            self._send(p.Cancel(request_id))

    def unload(self) -> None:
        self.loaded = None
        if self.alive:
            self._send(p.Unload())

    # ---------------------------------------------------------------- events

    def _emit(self, event: Any) -> None:
        if isinstance(event, p.Loaded):
            self.loaded = event
        if self.listener is not None:
            self.listener(event)
        else:
            self.events.put(event)

    def _pump_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        sink = self.log_file.open("ab") if self.log_file else None
        try:
            for raw in proc.stdout:
                line = raw.decode("utf-8", errors="replace").rstrip()
                self._log_tail.append(line)
                if sink:
                    sink.write(raw)
                    sink.flush()
        finally:
            if sink:
                sink.close()

    def _read_events(self, conn: Connection, proc: subprocess.Popen[bytes]) -> None:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                self._emit(p.decode(data))
            except p.ProtocolError as exc:
                log.warning("ignored a malformed worker message: %s", exc)
        code = proc.wait()
        # After a restart this thread may outlive its process: only the current one's
        # death is news.
        if proc is self.proc and not self._closing and not self._died_reported:
            self._died_reported = True
            self.loaded = None
            time.sleep(0.1)  # let the output pump catch the last lines
            self._emit(_death_event(code, list(self._log_tail)))

    # ------------------------------------------- blocking helpers (no listener)

    def next_event(self, timeout: float | None = None) -> Any:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError("the inference worker did not answer in time") from None

    def load_blocking(self, path: str | Path, timeout: float = 300.0, **settings: Any
                      ) -> p.Loaded:
        """Load and wait; raises :class:`WorkerError` with the worker's reason on failure."""
        self.load(path, **settings)
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.0, deadline - time.monotonic()))
            if isinstance(event, p.Loaded):
                return event
            if isinstance(event, p.Error | p.WorkerDied):
                raise WorkerError(event)

    def stream_chat(self, messages: list[dict[str, str]],
                    sampling: p.SamplingParams | None = None, continue_last: bool = False,
                    timeout: float = 600.0) -> Iterator[Any]:
        """Yield this reply's events up to and including its ``Done``.

        ``Error`` and ``WorkerDied`` are yielded too (and end the stream), so a caller
        can keep the partial reply before deciding what to tell the person.
        """
        request_id = self.chat(messages, sampling, continue_last)
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.0, deadline - time.monotonic()))
            if isinstance(event, p.Tokens | p.Done | p.ContextTrimmed | p.Error) and getattr(
                    event, "request_id", request_id) not in (request_id, None):
                continue
            if isinstance(event, p.Tokens | p.ContextTrimmed | p.Done | p.Error | p.WorkerDied):
                yield event
            if isinstance(event, p.Done | p.Error | p.WorkerDied):
                return


def _death_event(code: int, tail: list[str]) -> p.WorkerDied:
    if code < 0:
        sig = -code
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        reason = {"SIGKILL": "it was killed (out of memory, or by another program)",
                  "SIGSEGV": "it crashed (segmentation fault)",
                  "SIGABRT": "llama.cpp aborted (an internal check failed)"}.get(
                      name, f"it was stopped by {name}")
        return p.WorkerDied(exit_code=None, signal=sig, last_log_lines=tail[-10:],
                            message=f"The model worker stopped: {reason}. "
                                    "Your conversation is saved; reload the model to go on.")
    return p.WorkerDied(exit_code=code, signal=None, last_log_lines=tail[-10:],
                        message=f"The model worker exited unexpectedly (exit code {code}). "
                                "Your conversation is saved; reload the model to go on.")
