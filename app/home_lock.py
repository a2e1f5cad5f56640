"""One Hearth at a time on one data folder.

Two windows on one home would each think they own ``models/``, ``downloads/``,
``runs/`` and ``settings.json``: one deletes what the other is writing, and the last
to save the settings wins. The first to start takes an OS lock on ``<home>/hearth.lock``
(``flock`` on POSIX, ``msvcrt.locking`` on Windows) and writes its process id there, so
the second can say who holds the folder. The OS drops the lock when its process ends,
however it ends, so a crash never leaves the folder locked.

The lock is per process and re-entrant: the tests (and a window that opens a second
view on its own home) take it many times in one process, and it is released when the
last holder lets go. Child processes do not inherit it (the file is opened
non-inheritable), so workers never keep a home locked after the app has gone.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from app.errors import HearthError
from app.paths import open_private, private_folder
from app.side_files import read_text

LOCK_NAME = "hearth.lock"


class HomeLocked(HearthError, RuntimeError):
    """Another Hearth process holds this data folder; the message says which."""

    def __init__(self, home: Path, holder: dict[str, object] | None) -> None:
        self.home = home
        self.holder = holder or {}
        pid = self.holder.get("pid")
        who = f"process {pid}" if pid else "another process"
        what = self.holder.get("what")
        if what:
            who += f" ({what})"
        super().__init__(f"{home} is in use by another Hearth, {who}. Close it first, "
                         "or use another data folder with --home or $HEARTH_HOME")


@dataclass
class _Held:
    fd: int
    count: int


_held: dict[Path, _Held] = {}
_guard = threading.Lock()


def _try_lock(fd: int) -> bool:
    if sys.platform == "win32":
        import msvcrt

        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def read_holder(root: Path) -> dict[str, object] | None:
    """What the holding process wrote into the lock file, if it can be read."""
    try:
        text = read_text(root / LOCK_NAME) or ""  # a link is not followed (Damaged)
        # On Windows the first byte is the locked one; the record starts after it.
        data = json.loads(text.lstrip("\0 \n"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class HomeLock:
    """A held lock on one home; :meth:`release` it (a workspace does on close)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._released = False

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        with _guard:
            held = _held.get(self.root)
            if held is None:
                return
            held.count -= 1
            if held.count == 0:
                del _held[self.root]
                os.close(held.fd)  # closing the descriptor drops the OS lock


def acquire(root: Path, what: str = "") -> HomeLock:
    """Take the home's lock for this process or raise :class:`HomeLocked`.

    ``what`` is a few words on who holds it ("the app", "hearth models pull"), shown to
    a second instance.
    """
    root = Path(root).resolve()
    with _guard:
        held = _held.get(root)
        if held is not None:
            held.count += 1
            return HomeLock(root)
        private_folder(root)
        # Owner-only, never through a link: the process id is written into it (S12).
        fd = open_private(root / LOCK_NAME)
        if not _try_lock(fd):
            os.close(fd)
            raise HomeLocked(root, read_holder(root))
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "what": what})
        prefix = b"\0" if sys.platform == "win32" else b""
        os.ftruncate(fd, len(prefix))
        os.lseek(fd, len(prefix), os.SEEK_SET)
        os.write(fd, record.encode("utf-8"))
        _held[root] = _Held(fd, 1)
        return HomeLock(root)
