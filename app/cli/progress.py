"""The CLI's one progress display, for downloads and fine-tuning alike.

On a terminal a single line is redrawn in place (``\\r``), at most ten times a second so
a fast loop does not spend its time printing; in a log or a pipe, where ``\\r`` would
pile up on one unreadable line, one line is written per tenth of the work done.
Whatever else the command prints first ends the bar's line (:meth:`ProgressLine.end_line`),
so messages never land in the middle of a bar.
"""

from __future__ import annotations

import time
from typing import TextIO

REDRAW_EVERY_S = 0.1


def bar(fraction: float, width: int = 30) -> str:
    """``[#########.....................]`` for ``fraction`` of the work done."""
    filled = max(0, min(width, int(width * fraction)))
    return f"[{'#' * filled}{'.' * (width - filled)}]"


class ProgressLine:
    """One line of progress on ``stream``: redrawn on a terminal, a line per 10 % elsewhere."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        # Redrawing in place only makes sense on a terminal; a log gets one line per 10 %.
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._decile = -1
        self._drawn = False

    def show(self, fraction: float, text: str, *, log_text: str | None = None) -> None:
        """Report ``fraction`` (0..1) done; ``text`` follows the bar.

        ``log_text`` replaces the bar and ``text`` on the one-line-per-tenth output (a log
        line may say more than fits beside a bar); it defaults to the bar and ``text``.
        """
        if self.tty:
            now = time.monotonic()
            if now - self._last_draw < REDRAW_EVERY_S and fraction < 1:
                return
            self._last_draw = now
            self.stream.write(f"\r{bar(fraction, self.width)} {text}")
            self.stream.flush()
            self._drawn = True
            return
        decile = int(fraction * 10)
        if decile == self._decile:
            return
        self._decile = decile
        line = log_text if log_text is not None else f"{bar(fraction, self.width)} {text}"
        self.stream.write(line + "\n")
        self.stream.flush()

    def end_line(self) -> None:
        """Finish a bar drawn in place, so the next output starts on a line of its own."""
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False
