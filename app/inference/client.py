"""The client side of the inference worker: start it, talk to it, survive its death.

:class:`InferenceClient` starts ``backends.inference.llama_worker`` as a child process (by module
name, so this process never imports llama.cpp), connects over an authenticated local
channel (a Unix socket or a Windows named pipe, never TCP), and turns everything the
worker says into :mod:`app.inference.protocol` events. When the worker exits unexpectedly — an
abort in llama.cpp, a segfault, ``kill -9``, out of memory — the client reports a
:class:`~app.inference.protocol.WorkerDied` event with the exit code or signal and the last lines
the worker wrote, and :meth:`InferenceClient.restart` starts a fresh one.

One death is handled here without bothering the caller: a crash by signal while loading
or before the first reply, with llama.cpp's optimized kernels on, is what a CPU whose
AMX path is broken does. The client then restarts the worker once with the safe kernels,
loads the same model, re-sends the request in flight, reports a ``KernelFallback``
event, and (once the safe load works) remembers the choice in the home
(:mod:`app.inference.kernels`).

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

from app.errors import HearthError
from app.inference import protocol as p
from app.inference.kernels import FALLBACK_NOTICE, KernelMemory, is_crash
from app.machine.threads import ThreadClaims, auto_threads
from app.paths import HearthHome

log = logging.getLogger("hearth.inference")
Listener_ = Callable[[Any], None]
_LOG_TAIL = 40


class WorkerError(HearthError, RuntimeError):
    """A request failed; ``event`` is the ``Error`` or ``WorkerDied`` that said why."""

    def __init__(self, event: Any) -> None:
        super().__init__(event.message)
        self.event = event


class InferenceClient:
    def __init__(self, listener: Listener_ | None = None, start_timeout: float = 60.0,
                 log_file: Path | None = None, home: HearthHome | None = None) -> None:
        """``home`` gives the remembered kernel choice and the other heavy work's thread
        claims; without it both are this client's own."""
        self.listener = listener
        self.events: queue.Queue[Any] = queue.Queue()
        self.start_timeout = start_timeout
        self.log_file = log_file
        self.hello: p.Hello | None = None
        self.loaded: p.Loaded | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        # Re-entrant: the kernel fallback holds it across restart + re-sends, so a
        # request made meanwhile waits for the new worker instead of failing.
        self._send_lock = threading.RLock()
        self.kernels = KernelMemory(home.kernels_file if home else None)
        self.claims = ThreadClaims(home.busy) if home else None
        self._last_load: p.Load | None = None
        self._probation: dict[str, p.Chat] | None = None  # chats sent before a first Done
        self._safe_only = False       # this client fell back already
        self._fallback_signal: int | None = None  # set while the fallback load runs
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
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "backends.inference.llama_worker", str(listener.address)],
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
        choice = self.kernels.choose()
        extra_bufts = choice.extra_bufts and not self._safe_only
        load = p.Load(str(path), n_ctx, n_gpu_layers, n_threads, flash_attn, extra_bufts)
        with self._send_lock:
            self._last_load = load
            self._probation = {}
            self._send(load)

    def chat(self, messages: list[dict[str, str]], sampling: p.SamplingParams | None = None,
             continue_last: bool = False) -> str:
        request_id = f"r{next(self._ids)}"
        auto = self._last_load is not None and self._last_load.n_threads is None
        chat = p.Chat(request_id, messages, sampling or p.SamplingParams(), continue_last,
                      n_threads=auto_threads(self.claims) if auto else None)
        with self._send_lock:
            if self._probation is not None:
                self._probation[request_id] = chat
            self._send(chat)
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
            if self._fallback_signal is not None and not event.extra_bufts:
                self.kernels.remember_safe(self._fallback_signal)
                self._fallback_signal = None
        elif isinstance(event, p.Done):
            self._probation = None  # a reply came through: the kernels work
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
            tail = list(self._log_tail)
            self._record_death(proc.pid, code)
            if self._should_fall_back(code):
                self._fall_back(code, tail)
                return
            tried = (["restarted it with llama.cpp's safe CPU kernels"]
                     if self._safe_only else [])
            self._emit(_death_event(code, tail, tried))

    # ------------------------------------------------------ kernel fallback

    def _should_fall_back(self, code: int) -> bool:
        load = self._last_load
        return (is_crash(code) and load is not None and load.extra_bufts
                and self._probation is not None and not self._safe_only)

    def _fall_back(self, code: int, tail: list[str]) -> None:
        """Restart with the safe kernels, reload, and re-send what was in flight."""
        load = self._last_load
        assert load is not None
        with self._send_lock:
            pending = list((self._probation or {}).values())
            self._safe_only = True
            self._fallback_signal = -code
            try:
                self.start()
                name = _signal_name(-code)
                log.warning("worker crashed with optimized kernels (%s); falling back", name)
                self._emit(p.KernelFallback(-code, FALLBACK_NOTICE.format(signal=name)))
                safe = p.Load(load.path, load.n_ctx, load.n_gpu_layers, load.n_threads,
                              load.flash_attn, extra_bufts=False)
                self._last_load = safe
                self._probation = {c.request_id: c for c in pending}
                self._send(safe)
                for chat in pending:
                    self._send(chat)
            except (WorkerError, OSError) as exc:
                self._fallback_signal = None
                died = _death_event(code, tail, ["restarted it with llama.cpp's safe CPU "
                                                 f"kernels, which failed to start: {exc}"])
                self._emit(died)

    def _record_death(self, pid: int, code: int) -> None:
        """The worker log says how its process ended, beside its last lines."""
        if self.log_file is None:
            return
        how = (f"signal {_signal_name(-code)} ({-code})" if code < 0 else f"exit code {code}")
        kernels = ("optimized" if self._last_load is None or self._last_load.extra_bufts
                   else "safe")
        line = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} hearth: worker {pid} ended by {how} "
                f"(kernels: {kernels}); last lines above\n")
        with contextlib.suppress(OSError), self.log_file.open("a", encoding="utf-8") as f:
            f.write(line)

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


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def _death_event(code: int, tail: list[str], tried: list[str] | None = None) -> p.WorkerDied:
    tried = tried or []
    already = "".join(f" Hearth already {t}." for t in tried)
    if code < 0:
        sig = -code
        name = _signal_name(sig)
        reason = {"SIGKILL": "it was killed (out of memory, or by another program)",
                  "SIGSEGV": "it crashed (segmentation fault)",
                  "SIGABRT": "llama.cpp aborted (an internal check failed)"}.get(
                      name, f"it was stopped by {name}")
        return p.WorkerDied(exit_code=None, signal=sig, last_log_lines=tail[-10:],
                            message=f"The model worker stopped: {reason}.{already} "
                                    "Your conversation is saved; reload the model to go on.",
                            tried=tried)
    return p.WorkerDied(exit_code=code, signal=None, last_log_lines=tail[-10:],
                        message=f"The model worker exited unexpectedly (exit code {code})."
                                f"{already} Your conversation is saved; reload the model "
                                "to go on.", tried=tried)
