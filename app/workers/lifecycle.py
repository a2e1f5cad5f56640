"""The events every worker process shares: how it starts, logs, fails and dies.

Both protocols (:mod:`app.inference.protocol`, :mod:`app.finetune.protocol`) import these
instead of defining their own, so "how a worker death is reported" has one answer:
:meth:`WorkerDied.from_exit`, which :mod:`app.workers.supervisor` calls when a child ends
without saying goodbye. The JSON ``kind`` tags are the ones both protocols always used
("hello", "log", "error"), so the wire did not change.
"""

from __future__ import annotations

import signal as signals
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass
class Hello:
    """First event of every worker: which protocol it speaks and its process id.

    Each protocol subclasses it with what its worker has to say about itself (the
    llama.cpp build, the training device); the supervisor checks ``protocol_version``.
    """

    protocol_version: int
    pid: int
    kind: ClassVar[str] = "hello"


@dataclass
class Log:
    """A line of the worker's own log that the person may want to see."""

    level: str
    message: str
    kind: ClassVar[str] = "log"


@dataclass
class Error:
    """Something failed; ``message`` is for the person, ``error_kind`` for code.

    The inference worker lives on after most errors and names the request that failed;
    the training worker's error ends its run (and has no requests).
    """

    error_kind: str  # "load_failed", "bad_request", "bad_data", "out_of_memory", ...
    message: str
    request_id: str | None = None
    kind: ClassVar[str] = "error"


# What a signal most likely meant, said for a person.
_SIGNAL_REASONS = {"SIGKILL": "it was killed (out of memory, or by another program)",
                   "SIGSEGV": "it crashed (segmentation fault)",
                   "SIGABRT": "it aborted (an internal check failed)"}


def signal_name(sig: int) -> str:
    try:
        return signals.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def exit_reason(returncode: int) -> str:
    """How a process ended, short: "exit code 3" or "signal SIGSEGV (11)"."""
    if returncode < 0:
        return f"signal {signal_name(-returncode)} ({-returncode})"
    return f"exit code {returncode}"


@dataclass
class WorkerDied:
    """Synthesised by the supervisor, never sent: the worker process ended unexpectedly."""

    exit_code: int | None
    signal: int | None
    last_log_lines: list[str]
    message: str
    # What Hearth already did about it (e.g. restarted with the safe kernels).
    tried: list[str] = field(default_factory=list)
    cause: str = ""
    """What happened alone ("The training worker stopped: it was killed ..."), for a
    view that says how to go on in its own words; ``message`` adds what to do."""
    kind: ClassVar[str] = "worker_died"

    @classmethod
    def from_exit(cls, worker: str, returncode: int, tail: list[str], advice: str,
                  tried: list[str] | None = None) -> WorkerDied:
        """The event for ``worker`` (e.g. "model worker") ending with ``returncode``
        (negative: killed by that signal), with its last lines and what to do next."""
        tried = list(tried or [])
        already = "".join(f" Hearth already {t}." for t in tried)
        if returncode < 0:
            sig = -returncode
            reason = _SIGNAL_REASONS.get(signal_name(sig),
                                         f"it was stopped by {signal_name(sig)}")
            cause = f"The {worker} stopped: {reason}."
            return cls(exit_code=None, signal=sig, last_log_lines=tail[-10:],
                       message=f"{cause}{already} {advice}", tried=tried, cause=cause)
        cause = f"The {worker} exited unexpectedly (exit code {returncode})."
        return cls(exit_code=returncode, signal=None, last_log_lines=tail[-10:],
                   message=f"{cause}{already} {advice}", tried=tried, cause=cause)


LIFECYCLE_EVENTS = (Hello, Log, Error, WorkerDied)
