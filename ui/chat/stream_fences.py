"""Streamed reply text split into prose, code and fence lines as it arrives.

A reply is rendered from Markdown only once it is complete; while it streams it is plain
text. Plain text showed an opening code fence as a raw "```python" line until the reply
ended. :class:`FenceStream` reads the stream line by line so the view can show the
fence as a small language label and the code in a code font while it is still coming.
It holds back only the start of a line that may yet become a fence (a few characters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TEXT, CODE, FENCE = "text", "code", "fence"
_OPENING = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[ \t]*([^\s`]*)[^\n]*\n$")
_MAYBE_FENCE = re.compile(r"^[ \t]{0,3}(?:[`~][^\n]*)?$")


@dataclass
class Run:
    """A stretch of shown text: prose, code, or a fence's label (its language)."""

    kind: str
    text: str


class FenceStream:
    """Feed it chunks; it returns the runs that can be shown now."""

    def __init__(self) -> None:
        self._pending = ""           # the start of a line that may become a fence
        self._fence: str | None = None  # the open fence's characters, inside code
        self._line_start = True

    @property
    def in_code(self) -> bool:
        return self._fence is not None

    def feed(self, text: str) -> list[Run]:
        runs: list[Run] = []
        rest = self._pending + text
        self._pending = ""
        while rest:
            newline = rest.find("\n")
            if newline < 0:  # a partial line
                if self._line_start and _MAYBE_FENCE.match(rest):
                    self._pending = rest
                else:
                    self._add(runs, CODE if self.in_code else TEXT, rest)
                    self._line_start = False
                break
            line, rest = rest[:newline + 1], rest[newline + 1:]
            self._line(runs, line)
        return runs

    def _line(self, runs: list[Run], line: str) -> None:
        """A line's end arrived (``line`` is what is left of it since the last feed)."""
        whole_line, self._line_start = self._line_start, True
        if self._fence is not None:
            closing = rf"^[ \t]{{0,3}}{re.escape(self._fence[0])}{{{len(self._fence)},}}[ \t]*\n$"
            if whole_line and re.match(closing, line):
                self._fence = None
            else:
                self._add(runs, CODE, line)
            return
        opening = _OPENING.match(line) if whole_line else None
        if opening:
            self._fence = opening.group(1)
            runs.append(Run(FENCE, opening.group(2).lower() or "code"))
        else:
            self._add(runs, TEXT, line)

    @staticmethod
    def _add(runs: list[Run], kind: str, text: str) -> None:
        if runs and runs[-1].kind == kind:
            runs[-1].text += text
        else:
            runs.append(Run(kind, text))
