"""The client side of the inference worker: start it, talk to it, survive its death.

:class:`InferenceClient` runs ``backends.inference.llama_worker`` under a
:class:`~app.workers.supervisor.Supervisor` (by module name, so this process never imports
llama.cpp; over an authenticated local channel, never TCP) and passes on everything the
worker says as :mod:`app.inference.protocol` events. When the worker exits unexpectedly — an
abort in llama.cpp, a segfault, ``kill -9``, out of memory — the supervisor turns that into
a :class:`~app.workers.lifecycle.WorkerDied` event with the exit code or signal and the last
lines the worker wrote, and :meth:`InferenceClient.restart` starts a fresh one.

One death is handled here without bothering the caller: a crash by signal while loading
or before the first reply, with llama.cpp's optimized kernels on, is what a CPU whose
AMX path is broken does. The client then restarts the worker once with the safe kernels,
loads the same model, re-sends the request in flight, reports a ``KernelFallback``
event, and remembers the choice in the home (:mod:`app.inference.kernels`) once the safe
kernels did what crashed: the load, or for a crash in a reply, that reply. A reply under
a grammar (structured output) that crashes after the load's warm-up passed is not taken
for the kernels' fault at all: the grammar is the likelier cause, and the memory lasts.

Events reach the caller through ``listener`` (called on the client's reader thread; the
Qt adapter re-emits them as signals) or, when no listener is given, through
``client.events``, a queue that the blocking helpers below consume.
"""

from __future__ import annotations

import itertools
import logging
import queue
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from app.errors import HearthError
from app.inference import protocol as p
from app.inference.kernels import FALLBACK_NOTICE, KernelMemory, is_crash
from app.machine.threads import ThreadClaims, auto_threads
from app.paths import HearthHome
from app.workers.lifecycle import signal_name
from app.workers.supervisor import Supervisor, WorkerGone, WorkerSpec, WorkerStartError

log = logging.getLogger("hearth.inference")
Listener_ = Callable[[Any], None]
WORKER = "model worker"
AFTER_DEATH = "Your conversation is saved; reload the model to go on."
SAFE_RESTART = "restarted it with llama.cpp's safe CPU kernels"


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
        self.log_file = log_file
        self.hello: p.Hello | None = None
        self.loaded: p.Loaded | None = None
        self.worker = Supervisor(
            WorkerSpec("backends.inference.llama_worker", name=WORKER, advice=AFTER_DEATH,
                       protocol_version=p.PROTOCOL_VERSION, channel="socket",
                       log_file=log_file, start_timeout=start_timeout),
            decode=p.decode, encode=p.encode, on_event=self._emit, on_end=self._on_end,
            death_note=self._kernels_note)
        # Re-entrant: the kernel fallback holds it across restart + re-sends, so a
        # request made meanwhile waits for the new worker instead of failing.
        self._send_lock = threading.RLock()
        self.kernels = KernelMemory(home.kernels_file if home else None)
        self.claims = ThreadClaims(home.busy) if home else None
        self._last_load: p.Load | None = None
        self._probation: dict[str, p.Chat] | None = None  # chats sent before a first Done
        self._safe_only = False       # this client fell back already
        self._adapter: p.SetAdapter | None = None  # applied to the loaded base
        self._fallback_signal: int | None = None  # a fallback waiting to be confirmed
        self._loaded_once = False  # the current load answered Loaded (warm-up passed)
        self._confirm_by: set[str] = set()  # re-sent replies that confirm the fallback
        self._ids = itertools.count(1)
        # Extra listeners (the local server), called before ``listener`` on the reader
        # thread; each picks out its own request ids.
        self._taps: list[Listener_] = []

    # ------------------------------------------------------------ lifecycle

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The worker's process, or None before the first start."""
        return self.worker.proc

    @property
    def alive(self) -> bool:
        return self.worker.alive

    def start(self) -> p.Hello:
        """Start the worker process and wait for its ``Hello``."""
        if self.alive:
            assert self.hello is not None
            return self.hello
        self.loaded = None
        try:
            hello = self.worker.start()
        except WorkerStartError as exc:
            raise WorkerError(exc.error) from exc
        assert isinstance(hello, p.Hello)
        self.hello = hello
        return hello

    def restart(self) -> p.Hello:
        self.close()
        return self.start()

    def close(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit; kill it if it does not within ``timeout``."""
        self.worker.close(timeout, goodbye=p.Shutdown())
        self.loaded = None

    def kill(self) -> None:
        self.worker.kill()

    # -------------------------------------------------------------- commands

    def _send(self, message: Any) -> None:
        with self._send_lock:
            try:
                self.worker.send(message)
            except WorkerGone as exc:
                raise WorkerError(p.Error("not_running", str(exc))) from exc

    def load(self, path: str | Path, n_ctx: int = 4096, n_gpu_layers: int = 0,
             n_threads: int | None = None, flash_attn: bool = False,
             template: str = "auto", cache_type: str = "f16", prompt_lookup: int = 0
             ) -> None:
        if not self.alive:
            self.start()
        self.loaded = None
        choice = self.kernels.choose()
        extra_bufts = choice.extra_bufts and not self._safe_only
        load = p.Load(str(path), n_ctx, n_gpu_layers, n_threads, flash_attn, extra_bufts,
                      template, cache_type, prompt_lookup)
        with self._send_lock:
            self._last_load = load
            self._adapter = None
            self._probation = {}
            self._loaded_once = False
            self._send(load)

    def set_adapter(self, path: str | Path | None, scale: float = 1.0) -> None:
        """Apply a GGUF LoRA adapter to the loaded base (None: the base alone)."""
        command = p.SetAdapter(str(path) if path is not None else None, scale)
        with self._send_lock:
            self._adapter = command if path is not None else None
            self._send(command)

    def chat(self, messages: list[dict[str, str]], sampling: p.SamplingParams | None = None,
             continue_last: bool = False, raw: bool = False,
             request_id: str | None = None, tools: str = "") -> str:
        """Ask for a reply; safe from any thread (the worker answers in order).

        A caller that routes events itself (the local server) passes its own unique
        ``request_id``, so that it is listening before the first event can arrive."""
        request_id = request_id or f"r{next(self._ids)}"
        auto = self._last_load is not None and self._last_load.n_threads is None
        chat = p.Chat(request_id, messages, sampling or p.SamplingParams(), continue_last,
                      n_threads=auto_threads(self.claims) if auto else None, raw=raw,
                      tools=tools)
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

    def add_tap(self, tap: Listener_) -> None:
        """Also pass every event to ``tap`` (on the reader thread), until removed."""
        self._taps = [*self._taps, tap]

    def remove_tap(self, tap: Listener_) -> None:
        self._taps = [t for t in self._taps if t is not tap]

    def _emit(self, event: Any) -> None:
        if isinstance(event, p.Hello):
            return  # the supervisor's handshake: start() returned it already
        if isinstance(event, p.Loaded):
            self.loaded = event
            self._loaded_once = True
            if (self._fallback_signal is not None and not self._confirm_by
                    and not event.extra_bufts):
                self._confirmed()  # the crash was in loading: the safe load is the proof
        elif isinstance(event, p.Done):
            self._probation = None  # a reply came through: the kernels work
            if event.request_id in self._confirm_by:
                self._confirmed()  # the reply that crashed works with the safe kernels
        if isinstance(event, p.WorkerDied) or (isinstance(event, p.Error)
                                               and event.request_id in self._confirm_by):
            self._fallback_signal, self._confirm_by = None, set()  # not confirmed
        for tap in self._taps:
            tap(event)
        if self.listener is not None:
            self.listener(event)
        else:
            self.events.put(event)

    def _on_end(self, died: p.WorkerDied | None) -> None:
        """The supervisor's word that the worker ended: a death may be the kernels'."""
        if died is None:
            return
        self.loaded = None
        if self._should_fall_back(died):
            self._fall_back(died)
            return
        if self._safe_only:
            died = p.WorkerDied.from_exit(WORKER, _returncode(died), died.last_log_lines,
                                          AFTER_DEATH, [SAFE_RESTART])
        self._emit(died)

    # ------------------------------------------------------ kernel fallback

    def _should_fall_back(self, died: p.WorkerDied) -> bool:
        """A crash the kernels may explain: by a signal, with the optimized kernels, while
        loading or before the first reply after it. Not a reply under a grammar once the
        load's warm-up passed: llama.cpp's grammar code crashes on its own, and taking
        that for the kernels' fault would switch them off here for good."""
        load = self._last_load
        if not (is_crash(_returncode(died)) and load is not None and load.extra_bufts
                and self._probation is not None and not self._safe_only):
            return False
        constrained = any(c.sampling.grammar or c.sampling.json_schema
                          for c in self._probation.values())
        return not (self._loaded_once and constrained)

    def _confirmed(self) -> None:
        """The safe kernels did what crashed the optimized ones: remember that here."""
        assert self._fallback_signal is not None
        self.kernels.remember_safe(self._fallback_signal)
        self._fallback_signal, self._confirm_by = None, set()

    def _fall_back(self, died: p.WorkerDied) -> None:
        """Restart with the safe kernels, reload, and re-send what was in flight."""
        load = self._last_load
        assert load is not None and died.signal is not None
        with self._send_lock:
            pending = list((self._probation or {}).values())
            self._safe_only = True
            self._fallback_signal = died.signal
            # A crash in loading is confirmed by the safe load; one in a reply, only by
            # that reply then coming through (a crash of the reply's own making recurs).
            self._confirm_by = {c.request_id for c in pending} if self._loaded_once else set()
            try:
                self.start()
                name = signal_name(died.signal)
                log.warning("worker crashed with optimized kernels (%s); falling back", name)
                self._emit(p.KernelFallback(died.signal, FALLBACK_NOTICE.format(signal=name)))
                safe = replace(load, extra_bufts=False)
                self._last_load = safe
                self._probation = {c.request_id: c for c in pending}
                self._send(safe)
                if self._adapter is not None:  # the new worker starts with the base alone
                    self._send(self._adapter)
                for chat in pending:
                    self._send(chat)
            except (WorkerError, OSError) as exc:
                self._fallback_signal, self._confirm_by = None, set()
                self._emit(p.WorkerDied.from_exit(
                    WORKER, _returncode(died), died.last_log_lines, AFTER_DEATH,
                    [f"{SAFE_RESTART}, which failed to start: {exc}"]))

    def _kernels_note(self) -> str:
        """For the log line at a death: which kernels the worker ran with."""
        optimized = self._last_load is None or self._last_load.extra_bufts
        return f" (kernels: {'optimized' if optimized else 'safe'})"

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
        return self._wait_for(p.Loaded, timeout)

    def set_adapter_blocking(self, path: str | Path | None, timeout: float = 120.0
                             ) -> p.AdapterSet:
        """Apply an adapter and wait; raises :class:`WorkerError` when it is refused."""
        self.set_adapter(path)
        return self._wait_for(p.AdapterSet, timeout)

    def reply_blocking(self, messages: list[dict[str, str]],
                       sampling: p.SamplingParams | None = None, tools: str = "",
                       raw: bool = False, timeout: float = 600.0,
                       continue_last: bool = False) -> p.Done:
        """One whole reply, for callers that read the answer rather than stream it
        (benchmarks, drafting); raises :class:`WorkerError` with the worker's reason."""
        request_id = self.chat(messages, sampling, continue_last=continue_last, raw=raw,
                               tools=tools)
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.0, deadline - time.monotonic()))
            if isinstance(event, p.Done) and event.request_id == request_id:
                return event
            if isinstance(event, p.WorkerDied) or (
                    isinstance(event, p.Error)
                    and event.request_id in (request_id, None)):
                raise WorkerError(event)

    def _wait_for(self, done: type, timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.0, deadline - time.monotonic()))
            if isinstance(event, done):
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


def _returncode(died: p.WorkerDied) -> int:
    """The process's return code again: negative for a signal, as ``subprocess`` has it."""
    return -died.signal if died.signal is not None else (died.exit_code or 0)
