"""How many CPU threads Hearth's heavy work should use, so that it does not fight itself.

llama.cpp's decode threads spin while they wait for each other. With every core given to
it while a training run holds the same cores, a 2-core machine fell from 17-24 tok/s
(1 thread) to 0.6-2.6 tok/s (2 threads), with 9-11 s to the first token. So "auto" means
the physical cores *minus the threads that Hearth's other heavy processes hold*.

A process doing heavy work (a training run) claims its threads with a small file in the
home's ``busy/`` folder, named by its pid; claims of processes that no longer exist are
ignored and swept. A chat worker left on "auto" gets its thread count again before each
reply (:class:`app.inference.protocol.Chat` carries it), so a training started after the model
was loaded is taken into account at once.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

from app.atomic import atomic_write_text
from app.machine.cpu import cpu_info


def physical_cores() -> int:
    """llama.cpp's decode gains nothing from hyper-threads, so cores, not CPUs, count."""
    return max(1, cpu_info().physical_cores)


def default_threads() -> int:
    """The thread count when nothing else of Hearth's is running: all physical cores."""
    return physical_cores()


class ThreadClaims:
    """The heavy processes of one Hearth home and the threads each holds."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @contextlib.contextmanager
    def claim(self, kind: str, threads: int) -> Iterator[None]:
        """Hold ``threads`` for the ``with`` block (the claim dies with the process too)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{os.getpid()}.json"
        atomic_write_text(path, json.dumps({"kind": kind, "threads": int(threads)}))
        try:
            yield
        finally:
            path.unlink(missing_ok=True)

    def held_by_others(self) -> int:
        total = 0
        me = os.getpid()
        for path in self.folder.glob("*.json") if self.folder.is_dir() else ():
            try:
                pid = int(path.stem)
            except ValueError:
                continue
            if pid == me:
                continue
            if not psutil.pid_exists(pid):
                path.unlink(missing_ok=True)  # a claim outlived its process (kill -9)
                continue
            try:
                total += max(0, int(json.loads(path.read_text("utf-8"))["threads"]))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return total


def auto_threads(claims: ThreadClaims | None) -> int:
    """Physical cores not held by Hearth's other heavy work; at least one."""
    held = claims.held_by_others() if claims is not None else 0
    return max(1, physical_cores() - held)
