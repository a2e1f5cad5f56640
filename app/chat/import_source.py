"""Reading a file of conversations as a stream of records, within fixed bounds.

An import file comes from anywhere (a download, a zip another tool made), so reading it
must not depend on it being sane (finding S7 of issue 24). Before, the whole file was
read and parsed at once: small JSON values cost far more as Python objects (~77x the
file in memory), a link to ``/dev/zero`` passed the size check and a FIFO blocked the
import for ever. Here:

- only a regular file is read: it is opened without blocking and checked with
  ``fstat`` on the open descriptor (no race with a swapped path), then read in chunks,
  never past :data:`MAX_FILE_BYTES`;
- records are parsed one at a time: a JSONL line, or one element of a top-level JSON
  list (found by a scan that tracks strings and brackets), and each is refused before
  parsing when it holds more than :data:`MAX_RECORD_VALUES` JSON values, so memory is
  bounded by one record, not by the file;
- a record that does not parse (or nests too deeply) is one problem, not the end.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from app.errors import ExitCode, HearthError

MAX_FILE_BYTES = 256 << 20
MAX_RECORD_BYTES = 64 << 20
"""One conversation's text (a JSONL line, a list element): long chats are a few MiB."""
MAX_RECORD_VALUES = 2_000_000
"""JSON values in one record. A 10,000-message ChatGPT conversation with its metadata
holds well under a million; two million empty objects take ~150 MB as Python objects."""
MAX_RECORDS = 100_000
"""Entries in one file: more is not a chat history but a data set (split it)."""
CHUNK = 1 << 20

# A whole string, a bracket or comma, or a quote whose string has not ended yet.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]|"', re.S)
_SPACE = re.compile(r"[ \t\r\n]*")


def _after_space(text: str, at: int = 0) -> int:
    """Where the white space from ``at`` on ends."""
    match = _SPACE.match(text, at)
    return match.end() if match else at  # it always matches: the pattern may be empty


class ConversationImportError(HearthError, ValueError):
    """The file cannot be read as conversations at all; the message says why."""

    exit_code = ExitCode.BAD_INPUT


@dataclass
class Record:
    """One entry of the file: its JSON value, or why it has none."""

    where: str
    """"Line 4 of chats.jsonl", "Conversation 3 of conversations.json"."""
    value: Any = None
    problem: str | None = None


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for reading, if it is a regular file of at most MAX_FILE_BYTES."""
    name = path.name
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                     | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ConversationImportError(f"{name} cannot be read: {exc.strerror or exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ConversationImportError(f"{name} is not a regular file (a device, a pipe "
                                          "or a folder); choose the exported file itself")
        if info.st_size > MAX_FILE_BYTES:
            raise ConversationImportError(f"{name} is larger than {MAX_FILE_BYTES >> 20} "
                                          "MiB; split it and import the parts")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _Text:
    """The file's text, decoded (UTF-8, a BOM allowed) as it is read."""

    def __init__(self, fh: BinaryIO, name: str) -> None:
        self.fh, self.name = fh, name
        self.decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
        self.read = 0
        self.ended = False

    def more(self, at_least: int = CHUNK) -> str:
        if self.ended:
            return ""
        try:
            data = self.fh.read(min(max(at_least, CHUNK), MAX_FILE_BYTES + 1 - self.read))
        except OSError as exc:
            raise ConversationImportError(f"{self.name} cannot be read: "
                                          f"{exc.strerror or exc}") from exc
        before, self.read = self.read, self.read + len(data)
        if self.read > MAX_FILE_BYTES:
            raise ConversationImportError(f"{self.name} is larger than "
                                          f"{MAX_FILE_BYTES >> 20} MiB; split it")
        self.ended = not data
        try:
            return self.decoder.decode(data, final=self.ended)
        except UnicodeDecodeError as exc:
            raise ConversationImportError(f"{self.name} is not UTF-8 text (byte "
                                          f"{before + exc.start})") from exc


def records(fh: BinaryIO, name: str) -> tuple[str, Iterator[Record]]:
    """The file's format ("JSON" or "JSONL") and its entries, read as they are needed."""
    cursor = _Cursor(_Text(fh, name))
    first = cursor.next_char()
    if first == "[":
        cursor.at += 1
        return "JSON", _list(cursor)
    if first == "{" and _one_object(cursor):
        fh.seek(0)
        return "JSON", _list(_Cursor(_Text(fh, name)), single=True)
    fh.seek(0)
    return "JSONL", _lines(fh, name)


class _Cursor:
    """A place in the file's text; only what is not yet parsed is kept in memory."""

    def __init__(self, text: _Text) -> None:
        self.text, self.buf, self.at = text, "", 0

    def next_char(self) -> str:
        """The next character that is not white space ("" at the end of the file)."""
        while True:
            self.at = _after_space(self.buf, self.at)
            if self.at < len(self.buf) or self.text.ended:
                return self.buf[self.at:self.at + 1]
            self.buf, self.at = self.text.more(), 0

    def value_end(self) -> int | None:
        """Where the JSON value at the cursor ends, reading more as needed (None: the
        file ends first)."""
        while True:
            end = _extent(self.buf, self.at)
            if end is not None or self.text.ended:
                return end
            if len(self.buf) - self.at > MAX_RECORD_BYTES:
                raise ConversationImportError(
                    f"an entry of {self.text.name} is larger than "
                    f"{MAX_RECORD_BYTES >> 20} MiB; the import stopped there")
            self.buf, self.at = self.buf[self.at:], 0
            # At least doubling what is held, so that each rescan is paid for once.
            self.buf += self.text.more(at_least=len(self.buf))


def _one_object(cursor: _Cursor) -> bool:
    """Whether the file is one JSON object (else it is read as JSONL)."""
    end = cursor.value_end()
    if end is None:
        return False
    cursor.at = end
    return cursor.next_char() == ""


def _extent(buf: str, start: int) -> int | None:
    """The end of the JSON value starting at ``buf[start]`` (None: not in ``buf`` yet).

    Raises when the value holds more than MAX_RECORD_VALUES values, before it is parsed.
    """
    depth, values = 0, 1
    for token in _TOKENS.finditer(buf, start):
        at = token.start()
        char = buf[at]
        if char == '"':
            if token.end() - at == 1:  # a string not finished in what was read
                return None
            if depth == 0:
                return token.end()
        elif char in "[{":
            depth += 1
            values += 1
        elif char == ",":
            if depth == 0:
                return at
            values += 1
            if values > MAX_RECORD_VALUES:
                raise ConversationImportError(
                    f"an entry holds more than {MAX_RECORD_VALUES:,} JSON values; the "
                    "import stopped there")
        else:  # ] or }
            if depth == 0:
                return at
            depth -= 1
            if depth == 0:
                return token.end()
    return None


def _parse(text: str, where: str) -> Record:
    try:
        return Record(where, json.loads(text))
    except json.JSONDecodeError as exc:
        return Record(where, problem=f"not JSON ({exc.msg} at column {exc.colno})")
    except RecursionError:
        return Record(where, problem="nested too deeply")


def _list(cursor: _Cursor, single: bool = False) -> Iterator[Record]:
    """The elements of the top-level list whose text follows (or the one object)."""
    name, number = cursor.text.name, 0
    while cursor.next_char() not in ("]", ""):
        number += 1
        if number > MAX_RECORDS:
            raise ConversationImportError(f"{name} holds more than {MAX_RECORDS:,} "
                                          "entries; split it (the rest was not read)")
        where = f"Conversation {number} of {name}"
        end = cursor.value_end()
        if end is None:
            raise ConversationImportError(f"{name} ends inside conversation {number} (is it "
                                          "cut short?); the import stopped there")
        if end == cursor.at:
            raise ConversationImportError(f"{where} is not JSON; the import stopped there")
        yield _parse(cursor.buf[cursor.at:end], where)
        cursor.at = end
        if single:
            return
        after = cursor.next_char()
        if after == ",":
            cursor.at += 1
        elif after == "":
            raise ConversationImportError(f"{name} ends before its list does (is it cut "
                                          "short?); the import stopped there")
        elif after != "]":
            raise ConversationImportError(f"{where} is not followed by ',' or ']'; the "
                                          "import stopped there")


def _lines(fh: BinaryIO, name: str) -> Iterator[Record]:
    """One record per non-empty line (JSONL), each decoded and parsed on its own."""
    read = 0
    for number, line in enumerate(iter(lambda: fh.readline(MAX_RECORD_BYTES + 1), b""),
                                  start=1):
        read += len(line)
        if read > MAX_FILE_BYTES:
            raise ConversationImportError(f"{name} is larger than {MAX_FILE_BYTES >> 20} "
                                          "MiB; split it")
        if number > MAX_RECORDS:
            raise ConversationImportError(f"{name} holds more than {MAX_RECORDS:,} lines; "
                                          "split it (the rest was not read)")
        where = f"Line {number} of {name}"
        if len(line) > MAX_RECORD_BYTES:
            raise ConversationImportError(f"{where} is longer than "
                                          f"{MAX_RECORD_BYTES >> 20} MiB; the import "
                                          "stopped there")
        try:
            text = line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            yield Record(where, problem=f"not UTF-8 text (byte {exc.start})")
            continue
        if not text.strip():
            continue
        try:
            _extent(text, _after_space(text))  # refuses a line of too many values
        except ConversationImportError as exc:
            yield Record(where, problem=str(exc).split(";")[0])
            continue
        yield _parse(text, where)
