"""Which llama.cpp CPU kernels are safe on this machine, decided and remembered.

llama.cpp moves weights into "extra buffer types" at load time: repacked layouts for
faster kernels, and on CPUs that advertise AMX, its AMX path. On some machines that
path dies (SIGSEGV/SIGILL on the first batch of more than one token: an Intel Xeon VM
that advertises AMX does so on every prompt). The plain kernels always work and cost
little (65 vs 68 tok/s measured on that machine).

So the choice is made in three steps:

1. before loading: an explicit override (``HEARTH_LLAMA_EXTRA_BUFTS=0|1``), else a
   remembered crash for this machine and llama.cpp version, else AMX advertised but not
   granted by the kernel, turns them off; otherwise they are on;
2. the worker decodes a multi-token batch right after loading, so a bad kernel crashes
   while loading, not in the middle of the person's first question;
3. a worker that dies by a signal there (or on its first reply) is restarted once with
   the extra buffer types off; when that works, :meth:`KernelMemory.remember_safe`
   records it, so the next start goes straight to the safe kernels.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from app.machine.cpu import amx_usable, cpu_info
from app.side_files import load_json, save_json

OVERRIDE_ENV = "HEARTH_LLAMA_EXTRA_BUFTS"
# Signals that mean "the code crashed", as opposed to "someone killed it".
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGILL, signal.SIGBUS, signal.SIGFPE,
                           signal.SIGABRT})


def llama_version() -> str:
    try:
        return metadata.version("llama-cpp-python")
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class KernelChoice:
    """Whether llama.cpp may use its extra buffer types, and why."""

    extra_bufts: bool
    reason: str


@dataclass
class SafeRecord:
    """A remembered fallback: the machine, the llama.cpp build and what happened."""

    machine: str
    llama_cpp: str
    cpu_model: str
    signal: str
    when: str


class KernelMemory:
    """Remembered kernel choices for this machine, in the Hearth home's ``kernels.json``.

    Without a path (a bare client in a test or a script) the memory lasts as long as the
    object: the fallback still works, it is only paid again next time.
    """

    def __init__(self, path: Path | None = None, notices: list[str] | None = None) -> None:
        """A damaged file is kept aside and said (:mod:`app.side_files`): the cost is only
        that a crash is paid once more."""
        self.path = path
        self._records: dict[str, dict[str, str]] = {}
        if path is not None:
            self._records = load_json(path, _parse, "Hearth tries the optimized kernels "
                                      "again", notices) or {}

    @staticmethod
    def key() -> str:
        return f"{cpu_info().fingerprint()}:{llama_version()}"

    def safe_record(self) -> SafeRecord | None:
        raw = self._records.get(self.key())
        if raw is None:
            return None
        try:
            return SafeRecord(**raw)
        except TypeError:
            return None

    def choose(self) -> KernelChoice:
        override = os.environ.get(OVERRIDE_ENV, "").strip()
        if override in ("0", "1"):
            return KernelChoice(override == "1", f"set by {OVERRIDE_ENV}={override}")
        record = self.safe_record()
        if record is not None:
            return KernelChoice(False, f"llama.cpp's optimized CPU kernels crashed on this "
                                       f"machine ({record.signal}, {record.when}); using the "
                                       "safe ones")
        info = cpu_info()
        if info.amx_advertised and not amx_usable():
            return KernelChoice(False, "the CPU advertises AMX but the system does not "
                                       "grant it; using the safe kernels")
        return KernelChoice(True, "optimized CPU kernels")

    def remember_safe(self, crash_signal: int) -> None:
        try:
            name = signal.Signals(crash_signal).name
        except ValueError:
            name = f"signal {crash_signal}"
        info = cpu_info()
        self._records[self.key()] = asdict(SafeRecord(
            machine=info.fingerprint(), llama_cpp=llama_version(), cpu_model=info.model,
            signal=name, when=time.strftime("%Y-%m-%d")))
        self._save()

    def _save(self) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):  # only the memory is lost, paid once more
                save_json(self.path, self._records)

    def forget(self) -> None:
        """Drop this machine's record (after a llama.cpp upgrade a person may retry)."""
        self._records.pop(self.key(), None)
        self._save()


def _parse(raw: object) -> dict[str, dict[str, str]]:
    """The records in ``kernels.json``; TypeError when it is not what Hearth wrote."""
    if not isinstance(raw, dict) or not all(isinstance(v, dict) for v in raw.values()):
        raise TypeError("it does not hold one record per machine")
    return dict(raw)


def is_crash(returncode: int | None) -> bool:
    """A process exit that a change of kernels might cure."""
    return returncode is not None and returncode < 0 and -returncode in CRASH_SIGNALS


FALLBACK_NOTICE = ("llama.cpp's optimized CPU kernels crashed on this machine ({signal}); "
                   "Hearth restarted the model with the safe kernels and will use them here "
                   "from now on.")


def run_with_fallback(memory: KernelMemory,
                      run: Callable[[bool], subprocess.CompletedProcess[str]]
                      ) -> tuple[subprocess.CompletedProcess[str], bool]:
    """Run a llama.cpp child process (``run(extra_bufts)``) with the chosen kernels; if
    it crashes with the optimized ones, run it again with the safe ones and remember
    that when it works. Returns the last result and whether the fallback was taken."""
    choice = memory.choose()
    result = run(choice.extra_bufts)
    if not (choice.extra_bufts and is_crash(result.returncode)):
        return result, False
    retry = run(False)
    if retry.returncode == 0:
        memory.remember_safe(-result.returncode)
    return retry, True
