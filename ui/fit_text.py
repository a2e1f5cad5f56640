"""Text that fits where it is shown, instead of being cut off.

Two ways Qt cuts a label's text without a word, both seen in the window:

- a one-line label given less width than its text (the model bar's state in a narrow
  chat column read "Not loa"): :class:`ElidedLabel` ends such a line in "…" and puts
  the whole line in its tooltip;
- a word-wrapped label whose text grows after its window was shown (the Export dialog's
  result: the files written and the command to run were cut at the bottom): Qt does not
  grow a shown window for it, so :func:`grow_to_fit` does, at the window's width.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QPainter, QPaintEvent, QResizeEvent
from PySide6.QtWidgets import QLabel, QWidget

from ui.untrusted import tooltip


class ElidedLabel(QLabel):
    """One line of plain text, elided at the right when too narrow, whole in its tooltip.

    Its size hint is the whole line, so a layout with room shows it all; its minimum is
    a few characters, so it never widens a narrow window either.
    """

    MIN_CHARS = 6

    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setTextFormat(Qt.TextFormat.PlainText)
        self.setText(text)

    def setText(self, text: str) -> None:
        super().setText(text)
        self._update_tip()

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        margins = self.contentsMargins()
        few = self.fontMetrics().horizontalAdvance("x" * self.MIN_CHARS + "…")
        return QSize(min(hint.width(), few + margins.left() + margins.right()), hint.height())

    def is_elided(self) -> bool:
        return self.fontMetrics().horizontalAdvance(self.text()) > self.contentsRect().width()

    def shown_text(self) -> str:
        """The text as painted: the whole line, or its start and "…"."""
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight,
                                             self.contentsRect().width())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._update_tip()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        self.style().drawItemText(painter, self.contentsRect(),
                                  int(self.alignment() | Qt.AlignmentFlag.AlignVCenter),
                                  self.palette(), self.isEnabled(), self.shown_text(),
                                  self.foregroundRole())

    def _update_tip(self) -> None:
        self.setToolTip(tooltip(self.text()) if self.is_elided() else "")


def grow_to_fit(window: QWidget) -> None:
    """Make ``window`` tall enough for its layout at its present width (never smaller):
    call it after a word-wrapped label in it got longer text."""
    layout = window.layout()
    if layout is None:
        return
    layout.activate()
    width = window.width()
    needed = (layout.totalHeightForWidth(width) if layout.hasHeightForWidth()
              else layout.totalSizeHint().height())
    if needed > window.height():
        window.resize(width, needed)
