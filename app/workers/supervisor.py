"""One supervisor for every child process Hearth starts.

llama.cpp and torch run in child processes (the GUI process never imports them), so each
client needs the same few things: start ``python -m <module>`` from this checkout, talk to
it over a channel nobody else can join, read its events on a thread, notice when it dies
(and how: exit code or signal, its last lines of output) and start a fresh one. This
module does those once; the clients (:mod:`app.inference.client`,
:mod:`app.finetune.client`) keep only their policy, such as the kernel fallback.

Two channels, because the two workers need different things:

- ``"socket"`` (the inference worker): a ``multiprocessing.connection`` listener on a Unix
  socket or Windows named pipe (never TCP), authenticated with a fresh random key handed
  to the child in its environment; a connection that fails the challenge is refused.
  stdout and stderr are the worker's log, kept here (and in ``log_file``).
- ``"pipe"`` (the training worker): events are JSON lines on the child's stdout, commands
  lines on its stdin. The pipes are the child's own inherited descriptors, so nothing else
  can join them either; and stderr goes straight to ``log_file``, so a run whose app died
  still logs how it saved its work.

How a child is started (from which folder, with which environment) is
:mod:`app.workers.spawn`, shared with the one-shot children (a GGUF check, a benchmark
baseline, the doctor's self-test) that run to their end through its ``run_module``.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener
from pathlib import Path
from typing import IO, Any, Literal

from app.workers.lifecycle import Error, Hello, WorkerDied, exit_reason
from app.workers.spawn import AUTHKEY_ENV, ROOT, child_env, module_command

log = logging.getLogger("hearth.workers")

_TAIL_LINES = 40
_LOG_READ_BYTES = 64 * 1024


class WorkerStartError(RuntimeError):
    """The worker did not come up; ``error`` is the :class:`Error` that says why."""

    def __init__(self, error: Error) -> None:
        super().__init__(error.message)
        self.error = error


class WorkerGone(OSError):
    """A message could not be sent: the worker is not running (any more)."""


@dataclass(frozen=True)
class WorkerSpec:
    """Which child to run and how to speak about it."""

    module: str  # started as ``python -m module *args``
    args: tuple[str, ...] = ()
    # For the person: "The {name} stopped: ..."; "The {name} did not start".
    name: str = "worker"
    # The death message's last sentence: what the person can do next.
    advice: str = ""
    protocol_version: int = 1  # the Hello a child must send; a mismatch is refused
    channel: Literal["socket", "pipe"] = "socket"
    log_file: Path | None = None  # the child's output is appended here as well
    env: Mapping[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0  # "socket" only: how long the child may take to say Hello


@dataclass
class _Child:
    """One started process and what belongs to it; a restart makes a new one, so a
    reader thread that outlives its process can tell it is no longer the current one."""

    proc: subprocess.Popen[bytes]
    tail: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=_TAIL_LINES))
    conn: Connection | None = None
    pump: threading.Thread | None = None
    stderr_in_log: bool = False  # stderr goes straight to the log file (read it at death)
    closing: bool = False  # ended on purpose: not news
    expected: bool = False  # said its last word (finished, failed, cancelled): not news
    reported: bool = False


class Supervisor:
    """Start, talk to, watch and restart one worker process at a time.

    ``decode`` turns a message (bytes) into an event, raising ``ValueError`` on a bad
    one; ``encode`` the other way. ``on_event`` gets every event on the reader thread;
    ``on_end`` gets, once the current child's output ends, a :class:`WorkerDied` when it
    died unexpectedly, or ``None`` when it was closed or had said its last word.
    """

    def __init__(self, spec: WorkerSpec, decode: Callable[[bytes], Any],
                 encode: Callable[[Any], bytes], on_event: Callable[[Any], None],
                 on_end: Callable[[WorkerDied | None], None] | None = None,
                 death_note: Callable[[], str] | None = None) -> None:
        """``death_note`` adds to the line written to the log at a death (the inference
        client names the kernels it ran with)."""
        self.spec = spec
        self.decode = decode
        self.encode = encode
        self.on_event = on_event
        self.on_end = on_end
        self.death_note = death_note
        self.address: str | None = None  # "socket": where the child must connect
        self._child: _Child | None = None
        self._send_lock = threading.Lock()

    # ----------------------------------------------------------------- state

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self._child.proc if self._child is not None else None

    @property
    def alive(self) -> bool:
        return self._child is not None and self._child.proc.poll() is None

    def wait(self, timeout: float | None = None) -> int | None:
        return self._child.proc.wait(timeout) if self._child is not None else None

    def expect_exit(self) -> None:
        """The worker said its last word: its exit, whatever the code, is not a death."""
        if self._child is not None:
            self._child.expected = True

    # ----------------------------------------------------------- start, stop

    def start(self) -> Hello | None:
        """Start a fresh child. On a ``"socket"`` channel wait for its ``Hello`` and
        return it (raising :class:`WorkerStartError` if it does not come); on a
        ``"pipe"`` return at once: its Hello arrives as an event."""
        if self.spec.channel == "socket":
            return self._start_socket()
        self._start_pipe()
        return None

    def restart(self) -> Hello | None:
        self.close()
        return self.start()

    def close(self, timeout: float = 5.0, goodbye: Any = None) -> None:
        """Send ``goodbye`` (if any), wait ``timeout`` for the child to exit, then kill it."""
        child = self._child
        if child is None:
            return
        child.closing = True
        if child.proc.poll() is None:
            if goodbye is not None:
                with contextlib.suppress(WorkerGone):
                    self.send(goodbye)
            if child.proc.stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    child.proc.stdin.close()
            try:
                child.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if child.conn is not None:
            child.conn.close()
            child.conn = None

    def kill(self) -> None:
        """Stop the child at once; unless closing, its death is reported like any other."""
        child = self._child
        if child is not None and child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait()

    def send(self, message: Any) -> None:
        child = self._child
        if child is None or child.proc.poll() is not None:
            raise WorkerGone(f"the {self.spec.name} is not running")
        data = self.encode(message)
        with self._send_lock:
            try:
                if child.conn is not None:
                    child.conn.send_bytes(data)
                elif child.proc.stdin is not None:
                    child.proc.stdin.write(data + b"\n")
                    child.proc.stdin.flush()
                else:
                    raise WorkerGone(f"the {self.spec.name} is not connected")
            except (OSError, ValueError) as exc:
                raise WorkerGone(f"the {self.spec.name} is gone: {exc}") from exc

    # ---------------------------------------------------------------- socket

    def _start_socket(self) -> Hello:
        authkey = os.urandom(32)
        listener = Listener(authkey=authkey)  # AF_UNIX / AF_PIPE: local only
        try:
            self.address = str(listener.address)
            env = child_env({**self.spec.env, AUTHKEY_ENV: authkey.hex()})
            proc = subprocess.Popen(
                module_command(self.spec.module, [*self.spec.args, self.address]),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=env, cwd=ROOT)
            child = self._child = _Child(proc)
            child.pump = self._pump(child, proc.stdout)
            deadline = time.monotonic() + self.spec.start_timeout
            conn = self._accept(listener, child, deadline)
        finally:
            listener.close()
        child.conn = conn
        first = self._first_message(child, conn, deadline)
        refusal = self._refusal(first, required=True)
        if refusal is not None:
            child.closing = True  # refused, not dead: nothing to report
            self.kill()
            self.close()
            raise WorkerStartError(refusal)
        threading.Thread(target=self._read_socket, args=(child, conn), daemon=True,
                         name=f"{self._thread_name}-events").start()
        assert isinstance(first, Hello)
        return first

    def _accept(self, listener: Listener, child: _Child, deadline: float) -> Connection:
        """The child's authenticated connection; a connection that fails the challenge
        is refused and the wait goes on, so a stranger cannot take the child's place.
        Gives up if the child dies or the deadline passes first."""
        result: dict[str, Connection] = {}

        def accept() -> None:
            while True:
                try:
                    result["conn"] = listener.accept()
                    return
                except AuthenticationError as exc:
                    log.warning("refused a connection to the %s: %s", self.spec.name, exc)
                except (OSError, EOFError):
                    return  # the listener was closed: the start gave up

        thread = threading.Thread(target=accept, daemon=True,
                                  name=f"{self._thread_name}-accept")
        thread.start()
        while thread.is_alive():
            thread.join(0.05)
            if child.proc.poll() is not None or time.monotonic() > deadline:
                break
        if "conn" in result:
            return result["conn"]
        self.kill()
        raise WorkerStartError(Error("start_failed", f"the {self.spec.name} did not "
                                     f"start:\n{self._start_tail(child)}"))

    def _first_message(self, child: _Child, conn: Connection, deadline: float) -> Any:
        try:
            if conn.poll(max(0.0, deadline - time.monotonic())):
                return self.decode(conn.recv_bytes())
        except (EOFError, OSError, ValueError):
            pass
        child.closing = True
        self.kill()
        self.close()
        raise WorkerStartError(Error("start_failed", f"the {self.spec.name} did not "
                                     f"start:\n{self._start_tail(child)}"))

    def _start_tail(self, child: _Child) -> str:
        if child.pump is not None:
            child.pump.join(1.0)
        return "\n".join(child.tail) or "(no output)"

    def _read_socket(self, child: _Child, conn: Connection) -> None:
        while True:
            try:
                data = conn.recv_bytes()
            except (EOFError, OSError):
                break
            try:
                event = self.decode(data)
            except ValueError as exc:
                log.warning("ignored a malformed message from the %s: %s", self.spec.name, exc)
                continue
            self.on_event(event)
        self._ended(child)

    # ------------------------------------------------------------------ pipe

    def _start_pipe(self) -> None:
        self.address = None
        log_file = self.spec.log_file
        sink = log_file.open("ab") if log_file is not None else None
        try:
            proc = subprocess.Popen(module_command(self.spec.module, self.spec.args),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=sink if sink is not None else subprocess.PIPE,
                                    env=child_env(self.spec.env), cwd=ROOT)
        finally:
            if sink is not None:
                sink.close()  # the child holds its own descriptor
        child = self._child = _Child(proc, stderr_in_log=sink is not None)
        if sink is None:
            child.pump = self._pump(child, proc.stderr, to_log=False)
        threading.Thread(target=self._read_pipe, args=(child,), daemon=True,
                         name=f"{self._thread_name}-events").start()

    def _read_pipe(self, child: _Child) -> None:
        assert child.proc.stdout is not None
        for raw in child.proc.stdout:
            line = raw.decode("utf-8", errors="replace").strip()
            if not line:
                continue
            try:
                event = self.decode(line.encode("utf-8"))
            except ValueError:
                child.tail.append(line)  # a stray print: log output, not an event
                continue
            refusal = self._refusal(event, required=False)
            if refusal is not None:
                child.expected = True
                self.on_event(refusal)
                self.kill()
                break
            self.on_event(event)
        self._ended(child)

    # --------------------------------------------------------- shared parts

    @property
    def _thread_name(self) -> str:
        return self.spec.module.rsplit(".", 1)[-1]

    def _refusal(self, event: Any, required: bool) -> Error | None:
        """Why ``event`` ends the handshake, or None: a Hello of another protocol
        version is refused (both ends must come from one install of Hearth)."""
        if not isinstance(event, Hello):
            if not required:
                return None
            return Error("protocol", f"the {self.spec.name} did not say hello "
                                     f"(it sent {getattr(event, 'kind', '?')!r}); "
                                     "reinstall Hearth")
        if event.protocol_version != self.spec.protocol_version:
            return Error("protocol", f"the {self.spec.name} speaks protocol "
                                     f"{event.protocol_version}, this app speaks "
                                     f"{self.spec.protocol_version}; reinstall Hearth")
        return None

    def _pump(self, child: _Child, stream: IO[bytes] | None, to_log: bool = True
              ) -> threading.Thread:
        """Keep the child's output lines for the death report (and in the log file)."""

        def pump() -> None:
            assert stream is not None
            sink = (self.spec.log_file.open("ab")
                    if to_log and self.spec.log_file is not None else None)
            try:
                for raw in stream:
                    child.tail.append(raw.decode("utf-8", errors="replace").rstrip())
                    if sink is not None:
                        sink.write(raw)
                        sink.flush()
            finally:
                if sink is not None:
                    sink.close()

        thread = threading.Thread(target=pump, daemon=True, name=f"{self._thread_name}-output")
        thread.start()
        return thread

    def _ended(self, child: _Child) -> None:
        """The child's channel closed: reap it and, if it is the current child and its
        end was not planned, report the death once."""
        code = child.proc.wait()
        if child is not self._child:
            return  # replaced by a restart: its end is old news
        died = None
        if not (child.closing or child.expected or child.reported):
            child.reported = True
            if child.pump is not None:
                child.pump.join(1.0)  # its last lines are the most telling ones
            died = WorkerDied.from_exit(self.spec.name, code, self._last_lines(child),
                                        self.spec.advice)
            self._record_death(child.proc.pid, code)
        if self.on_end is not None:
            self.on_end(died)

    def _last_lines(self, child: _Child) -> list[str]:
        lines = list(child.tail)
        if child.stderr_in_log and self.spec.log_file is not None:
            with contextlib.suppress(OSError), self.spec.log_file.open("rb") as f:
                start = max(0, f.seek(0, os.SEEK_END) - _LOG_READ_BYTES)
                f.seek(start)
                read = f.read().decode("utf-8", errors="replace").splitlines()
                lines += read[1:] if start else read  # not half a line
        return lines[-10:]

    def _record_death(self, pid: int, code: int) -> None:
        """The log says how the process ended, beside its last lines."""
        if self.spec.log_file is None:
            return
        note = self.death_note() if self.death_note is not None else ""
        line = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} hearth: worker {pid} ended by "
                f"{exit_reason(code)}{note}; last lines above\n")
        with contextlib.suppress(OSError), self.spec.log_file.open("a", encoding="utf-8") as f:
            f.write(line)
