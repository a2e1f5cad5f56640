"""Writing files so that a crash or a power cut leaves the old version or the new one.

Every file Hearth rewrites in place (settings, run state, checkpoint records) goes
through here: the bytes go to a temporary file in the same folder, are fsynced, the
temporary file is renamed over the target, and the folder is fsynced so the rename
itself is on disk. Without the fsyncs a crash shortly after a "save" can leave an
empty or partly written file under the final name on common filesystems (ext4
with delayed allocation, for one).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file someone else wrote (a library's ``save``) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, private: bool = False) -> None:
    """Replace ``path`` with ``data``: the old bytes or the new ones, never a mix.

    ``private`` creates the file readable by its owner only (0600), as everything in the
    data folder is (conversations, keys, settings); an export leaves it to the umask.
    The temporary file is created afresh (``O_EXCL``), so a link planted under its
    name is never followed.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    flags = (os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        tmp.unlink(missing_ok=True)  # a crash's leftover (or a planted link) goes first
        fd = os.open(tmp, flags, 0o600 if private else 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, private: bool = False) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), private)
