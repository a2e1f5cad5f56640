"""The small files beside the database: read defensively, written atomically and privately.

``settings.json``, ``teach/versions.json``, ``kernels.json`` and ``server-api-key`` are
read while the window is being built. One damaged or wrong-typed file used to stop the
app from opening at all (finding S6 of issue 24), where a damaged ``hearth.db`` is
handled (:func:`app.db.connect`). They now take the database's way: a file that cannot
be understood is kept aside as ``<name>.bad-<time>``, Hearth starts that part clean, and
a sentence for the person goes to the workspace's notices, which the window shows once
("Hearth repaired its data folder") and the CLI prints.

Nothing in the data folder is meant to point elsewhere, so a read does not follow a
symbolic link and takes only a regular file of bounded size (finding S12: a link there
made Hearth read, chmod or truncate its target). Writes go through :mod:`app.atomic`
(fsynced, renamed into place) and are readable by the owner only.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from app.atomic import atomic_write_text

log = logging.getLogger("hearth.side_files")
T = TypeVar("T")

MAX_BYTES = 16 << 20
"""Far more than any side file Hearth writes (settings are a few KiB)."""
DAMAGE = (ValueError, TypeError, AttributeError, KeyError, RecursionError)
"""What parsing a file that is not what Hearth wrote raises."""


class Damaged(ValueError):
    """The file is there but is not one Hearth wrote; the message says what it is."""


def read_text(path: Path) -> str | None:
    """``path``'s text, or None when there is no such file.

    Raises :class:`Damaged` for a symbolic link, a folder or device, a file over
    :data:`MAX_BYTES` or one that is not UTF-8; ``OSError`` when it cannot be read.
    """
    flags = (os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
             | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise Damaged("it is a symbolic link") from exc
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Damaged("it is not a regular file")
        chunks, size = [], 0
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BYTES:
                raise Damaged(f"it is larger than {MAX_BYTES >> 20} MiB")
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Damaged(f"it is not UTF-8 text (byte {exc.start})") from exc


def keep_aside(path: Path, problem: str, consequence: str,
               notices: list[str] | None) -> None:
    """Move a damaged file out of the way, so the next save does not overwrite what the
    person may want back, and say so (``consequence``: what Hearth does instead)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    kept, n = path.with_name(f"{path.name}.bad-{stamp}"), 2
    while kept.exists() or kept.is_symlink():
        kept, n = path.with_name(f"{path.name}.bad-{stamp}-{n}"), n + 1
    try:
        os.replace(path, kept)
        where = f"it was kept as {kept.name}"
    except OSError:
        where = "it could not be moved aside"
    tell(f"{path.name} could not be read ({problem}); {where} and {consequence}", notices)


def tell(sentence: str, notices: list[str] | None) -> None:
    """A sentence for the person: into ``notices`` where someone will show them, and
    into the log either way."""
    log.warning("%s", sentence)
    if notices is not None:
        notices.append(sentence)


def load_json(path: Path, parse: Callable[[Any], T], consequence: str,
              notices: list[str] | None) -> T | None:
    """``parse`` of the JSON in ``path``; None when the file is missing or damaged.

    ``parse`` checks the shape and raises (ValueError, TypeError, ...) on anything else:
    then the file is kept aside. A file that cannot be read at all (permissions) is
    left where it is: the next start may read it.
    """
    try:
        text = read_text(path)
    except Damaged as exc:
        keep_aside(path, str(exc), consequence, notices)
        return None
    except OSError as exc:
        tell(f"{path} cannot be read ({exc.strerror or exc}); {consequence} this time",
             notices)
        return None
    if text is None:
        return None
    try:
        return parse(json.loads(text))
    except DAMAGE as exc:
        keep_aside(path, f"{type(exc).__name__}: {str(exc)[:200]}", consequence, notices)
        return None


def save_json(path: Path, data: Any) -> None:
    """Write ``data`` as the file's new content: atomically, fsynced, owner-only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2), private=True)


def expect(value: Any, kind: type | tuple[type, ...], what: str) -> Any:
    """``value`` if it is a ``kind``; else TypeError naming ``what`` (for ``parse``)."""
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise TypeError(f"{what} is {type(value).__name__}")
    return value
