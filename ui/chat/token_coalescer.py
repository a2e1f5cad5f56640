"""Tokens of a streaming reply, handed to the views a frame or two at a time.

A worker can send a token every millisecond; a view that appended each one would spend
the GUI thread on layout (DESIGN.md: coalesce tokens). :class:`TokenCoalescer` collects
them and a 40 ms timer hands them on as one piece, so a view does one append per frame or
two however fast the worker runs.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QTimer, Signal

FLUSH_MS = 40


class TokenCoalescer(QObject):
    flushed = Signal(str, int)  # the text collected since the last flush, tokens in it

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._texts: list[str] = []
        self._tokens = 0
        self._timer = QTimer(self, interval=FLUSH_MS, singleShot=True)
        self._timer.timeout.connect(self.flush)

    def add(self, text: str, n_tokens: int) -> None:
        self._texts.append(text)
        self._tokens += n_tokens
        if not self._timer.isActive():
            self._timer.start()

    def flush(self) -> None:
        """Hand on what was collected now (a reply ends: nothing may stay behind)."""
        self._timer.stop()
        if not self._texts:
            return
        text, tokens = "".join(self._texts), self._tokens
        self._texts.clear()
        self._tokens = 0
        self.flushed.emit(text, tokens)

    def stop(self) -> None:
        """The window closes: no flush comes after."""
        self._timer.stop()
        self._texts.clear()
        self._tokens = 0
