"""Which weights a model file holds, told apart cheaply: for a live adapter's base.

A taught version kept as an adapter is applied on its base at every load. It used to be
accepted when the base's *path* was the one recorded (finding S8 of issue 24), but a
path is only a name: removing the base frees its name and ``models/<name>.gguf``, an
import of any other file under that name takes both, and a starter-package upgrade
replaces the base in place. llama.cpp refuses an adapter only when shapes differ, so
another quantization or fine-tune of the same family was used silently.

So the base's identity is recorded with the version and compared instead: its size,
its full SHA-256 where Hearth knows one (imported and downloaded files are hashed as
they arrive), and always a fingerprint of its content, a SHA-256 over the file's first
and last MiB and blocks spread evenly between. The fingerprint costs a few MiB of
reading, so it is checked at every load; any two different weight files differ in it
(tensor data fills the file, and the blocks sample it end to end), while a reinstalled
identical file, which gets a new inode and time, still matches.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

EDGE = 1 << 20
BLOCKS = 32
BLOCK = 64 << 10


def fingerprint(path: Path) -> str:
    """SHA-256 over the size, the first and last MiB, and BLOCKS blocks spread between."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        digest.update(str(size).encode())
        offsets = [0, max(0, size - EDGE)]
        offsets += [size * (i + 1) // (BLOCKS + 1) for i in range(BLOCKS)]
        for at, length in zip(offsets, [EDGE, EDGE] + [BLOCK] * BLOCKS, strict=True):
            fh.seek(at)
            digest.update(fh.read(length))
    return digest.hexdigest()


@dataclass
class Identity:
    """What is recorded of a base file, to recognise it (or not) later."""

    size: int = 0
    fingerprint: str = ""
    sha256: str | None = None
    """The whole file's hash, where Hearth knows it."""


def identity(path: Path, sha256: str | None = None) -> Identity:
    """The identity of ``path`` now (``sha256``: its full hash, where known)."""
    return Identity(path.stat().st_size, fingerprint(path), sha256 or None)


def matches(recorded: Identity, path: Path, sha256: str | None = None) -> bool:
    """Whether ``path`` (whose full hash, if known, is ``sha256``) is the recorded file."""
    if recorded.sha256 and sha256 and recorded.sha256 != sha256:
        return False
    try:
        return (path.stat().st_size == recorded.size
                and fingerprint(path) == recorded.fingerprint)
    except OSError:
        return False
