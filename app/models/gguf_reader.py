"""GGUF's binary encoding, read with a bound on every length: the layer under
:mod:`app.models.gguf_file` (the header and tensor table of a model) and
:mod:`app.models.gguf_vocab` (a few vocabulary entries by id or text).

Model files come from strangers, and llama.cpp aborts the whole process on some
malformed inputs, so every count, string length and array nesting is checked against
the file's size and a sane limit before anything is read or allocated; whatever is wrong
ends as one :class:`GGUFError` with a reason a person can read.
"""

from __future__ import annotations

import struct
from typing import Any, BinaryIO

from app.errors import ExitCode, HearthError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Arrays longer than this are summarised by their length (the vocabulary has ~50k
# entries; nothing in the library view needs them).
_ARRAY_KEEP = 64
_MAX_COUNT = 10_000_000
_MAX_DEPTH = 8  # arrays of arrays deeper than this exist only to crash parsers
_MAX_STRING = 64 << 20  # chat templates are kilobytes; nothing legitimate is this long

SCALARS: dict[int, str] = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
                           7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
"""Metadata value types that are one scalar, by their ``struct`` format."""
STRING, ARRAY = 8, 9


class GGUFError(HearthError, ValueError):
    """The file is not a usable GGUF model; the message is one line for a person."""

    exit_code = ExitCode.BAD_INPUT


class GGUFReader:
    """GGUF's primitive encoding (little-endian scalars, length-prefixed strings, typed
    arrays) read from a file of known ``size``, every length checked before it is used."""

    def __init__(self, fh: BinaryIO, size: int) -> None:
        self.fh = fh
        self.size = size

    def read(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise GGUFError("the file ends in the middle of its header (truncated download?)")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.read(struct.calcsize(fmt)))[0]

    def count(self, what: str) -> int:
        n = self.scalar("<Q")
        if n > _MAX_COUNT:
            raise GGUFError(f"the header claims {n} {what}, which cannot be right")
        return n

    def string_length(self) -> int:
        n = self.scalar("<Q")
        if n > self.size:
            raise GGUFError("a metadata string is longer than the whole file")
        if n > _MAX_STRING:
            raise GGUFError(f"a metadata string claims {n:,} bytes, which cannot be right")
        return n

    def skip(self, n: int) -> None:
        """Move past ``n`` bytes without reading them, checking they are in the file."""
        if self.fh.tell() + n > self.size:
            raise GGUFError("the file ends in the middle of its header (truncated download?)")
        self.fh.seek(n, 1)

    def skip_strings(self, n: int) -> None:
        """Walk ``n`` length-prefixed strings through a small buffer, decoding none."""
        buf, off, limit = b"", 0, min(self.size, _MAX_STRING)
        for _ in range(n):
            if off + 8 > len(buf):
                buf = buf[off:] + self.fh.read(256 << 10)
                off = 0
                if len(buf) < 8:
                    raise GGUFError("the file ends in the middle of its header "
                                    "(truncated download?)")
            (length,) = struct.unpack_from("<Q", buf, off)
            if length > limit:
                raise GGUFError("a metadata string is longer than the whole file")
            off += 8 + length
            if off > len(buf):  # the string runs past the buffer: jump over the rest
                self.skip(off - len(buf))
                buf, off = b"", 0
        self.fh.seek(off - len(buf), 1)  # give back what was read ahead

    def string(self) -> str:
        n = self.string_length()
        try:
            return self.read(n).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFError("a metadata string is not valid UTF-8") from exc

    def value(self, vtype: int, depth: int = 0) -> Any:
        if vtype in SCALARS:
            return self.scalar(SCALARS[vtype])
        if vtype == STRING:
            return self.string()
        if vtype == ARRAY:
            if depth >= _MAX_DEPTH:
                raise GGUFError(f"metadata arrays are nested more than {_MAX_DEPTH} deep")
            item_type = self.scalar("<I")
            n = self.count("array items")
            if n > _ARRAY_KEEP:
                # Long arrays (the vocabulary, its merges and scores) are walked, not
                # built: only their length is ever used, and decoding 150k strings
                # costs several times the header's size in memory.
                self.skip_items(item_type, n, depth + 1)
                return ArrayLength(n)
            return [self.value(item_type, depth + 1) for _ in range(n)]
        raise GGUFError(f"unknown metadata value type {vtype}")

    def skip_items(self, item_type: int, n: int, depth: int) -> None:
        if item_type in SCALARS:
            width = struct.calcsize(SCALARS[item_type])
            if n * width > self.size:
                raise GGUFError("a metadata array is longer than the whole file")
            self.skip(n * width)
        elif item_type == STRING:
            self.skip_strings(n)
        elif item_type == ARRAY:
            if depth >= _MAX_DEPTH:
                raise GGUFError(f"metadata arrays are nested more than {_MAX_DEPTH} deep")
            for _ in range(n):
                inner = self.scalar("<I")
                self.skip_items(inner, self.count("array items"), depth + 1)
        else:
            raise GGUFError(f"unknown metadata value type {item_type}")


class ArrayLength(int):
    """Stands for a long metadata array that was skipped; its value is the length."""
