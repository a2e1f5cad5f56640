"""Taking a person's file off the disk: which files a path names, and their bytes, bounded.

Folders hold whatever a person's disk holds: links that loop, FIFOs that block a reader
forever, devices, files far larger than memory, files still being written. Every one of
those is named with its reason (:class:`Unreadable`) and the add goes on with the rest.
A file is read whole into memory only below :attr:`ReadLimits.max_file_bytes`, checked
before reading and again while reading (a file can grow after its ``stat``), so memory
stays bounded whatever the disk holds.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.units import format_bytes

# The kinds Hearth reads, by file name ending; a folder's other files are passed over.
KINDS = {".pdf": "pdf", ".docx": "docx", ".html": "html", ".htm": "html",
         ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
         ".rst": "text"}


@dataclass(frozen=True)
class ReadLimits:
    """How much of a stranger's file Hearth takes in; each bound names what it protects."""

    max_file_bytes: int = 100 * 1024 * 1024
    """A file above this is refused before it is read: it is read whole into memory
    (a PDF needs its cross-reference table at the end), so this bounds memory."""
    max_text_chars: int = 20_000_000
    """Extracted text above this is refused: about 10,000 pages, and some hours of
    embedding on a laptop; a compressed format (PDF, DOCX) can hold far more text than
    its file size suggests."""
    max_pdf_pages: int = 5_000
    max_docx_xml_bytes: int = 64 * 1024 * 1024
    """word/document.xml, decompressed: a zip bomb stops here, however it is packed."""

    def __post_init__(self) -> None:
        if min(self.max_file_bytes, self.max_text_chars, self.max_pdf_pages,
               self.max_docx_xml_bytes) <= 0:
            raise ValueError("every read limit must be positive")


class Unreadable(Exception):  # said as "this file is unreadable: reason"
    """A file Hearth will not index; ``str()`` is the reason, for the person."""


@dataclass(frozen=True)
class SourceBytes:
    """A file's bytes as read, and what its ``stat`` said before reading."""

    path: Path
    kind: str
    data: bytes
    sha256: str
    size: int
    mtime_ns: int
    inode: int

    def changed_since(self) -> str | None:
        """Why the file on disk is no longer the one read, or None: what was indexed
        must be what the hash names, so a file written meanwhile is read again later."""
        try:
            now = os.stat(self.path)
        except OSError as exc:
            return f"it went away while it was read ({exc.strerror})"
        if (now.st_size, now.st_mtime_ns, now.st_ino) != (self.size, self.mtime_ns,
                                                           self.inode):
            return "it changed while it was read; add it again once it is written"
        return None


def kind_of(path: Path) -> str | None:
    return KINDS.get(path.suffix.lower())


def files_under(paths: list[Path]) -> Iterator[tuple[Path, str | None]]:
    """Each file the paths name, with None, or with the reason it is passed over.

    A folder is walked without following links to folders (a link loop cannot trap
    the walk); a link to a file is followed when the file is read. Files of kinds Hearth
    does not read are passed over silently inside a folder, but named when asked for.
    """
    for path in paths:
        try:
            is_dir = path.is_dir()
        except OSError as exc:
            yield path, _os_reason(exc)
            continue
        if not is_dir:
            yield path, None if kind_of(path) else (
                f"not a kind Hearth reads (it reads {', '.join(sorted(set(KINDS)))})")
            continue
        for folder, dirs, names in os.walk(path, followlinks=False, onerror=None):
            dirs.sort()
            for name in sorted(names):
                if kind_of(Path(name)):
                    yield Path(folder) / name, None


def read_source(path: Path, limits: ReadLimits) -> SourceBytes:
    """The file's bytes, or :class:`Unreadable` saying why not; never blocks on a FIFO."""
    kind = kind_of(path)
    if kind is None:
        raise Unreadable("not a kind Hearth reads")
    try:
        before = os.stat(path)
    except OSError as exc:
        raise Unreadable(_os_reason(exc)) from exc
    _check_regular(before)
    if before.st_size > limits.max_file_bytes:
        raise Unreadable(f"it is {format_bytes(before.st_size)}, over the "
                         f"{format_bytes(limits.max_file_bytes)} limit for one document; "
                         "split it into smaller files")
    try:
        # O_NONBLOCK: should the name now be a FIFO (swapped after the stat), opening
        # it does not wait for a writer; fstat below then refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise Unreadable(_os_reason(exc)) from exc
    with os.fdopen(fd, "rb") as f:
        opened = os.fstat(f.fileno())
        _check_regular(opened)
        data = f.read(limits.max_file_bytes + 1)
    if len(data) > limits.max_file_bytes:
        raise Unreadable(f"it grew past the {format_bytes(limits.max_file_bytes)} limit "
                         "for one document while it was read")
    return SourceBytes(path, kind, data, hashlib.sha256(data).hexdigest(), opened.st_size,
                       opened.st_mtime_ns, opened.st_ino)


def _check_regular(st: os.stat_result) -> None:
    if stat.S_ISREG(st.st_mode):
        return
    what = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else
            "a folder" if stat.S_ISDIR(st.st_mode) else
            "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
            "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
    raise Unreadable(f"it is {what}, not a file; passed over")


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link that loops back on itself"
    if exc.errno == errno.ENOENT:
        return "it does not exist (or is a link to nothing)"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)
