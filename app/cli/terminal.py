"""What the CLI writes to a terminal, made safe to write.

Model names, GGUF metadata, hub repository and file names, error texts that quote them,
and model replies all come from strangers. Written raw, ``\\x1b[2J`` clears the screen
and other escape sequences move the cursor, retitle the window or forge earlier output.
The CLI therefore writes through :class:`PrintableStream`, which drops control
characters (C0 and C1, DEL, and the bidirectional overrides that reorder what is
shown) except newline and tab. That is one place for every ``print`` the CLI has or
will have, rather than a call to remember at each. JSON output is unchanged: ``json``
already writes control characters as ``\\u001b`` escapes.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO

_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` without control characters, newlines and tabs kept."""
    return _CONTROL.sub("", text)


class PrintableStream:
    """A text stream that writes :func:`printable` text to the stream it wraps.

    A carriage return opening a write is kept: the CLI's own progress bars redraw
    their line with it."""

    def __init__(self, inner: TextIO) -> None:
        self.inner = inner

    def write(self, text: str) -> int:
        lead = "\r" if text.startswith("\r") else ""
        return self.inner.write(lead + printable(text[len(lead):]))

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, encoding, fileno...
        return getattr(self.inner, name)


@contextlib.contextmanager
def printable_output() -> Iterator[None]:
    """sys.stdout and sys.stderr write only printable text while this lasts."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PrintableStream(out), PrintableStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
