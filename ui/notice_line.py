"""A line that says what just happened: a passing note, or an error with what helps.

The Models tab's status used to be a red label that kept its last error for good (a
failed import still showed 15 minutes later). Here a note fades after a few seconds,
and an error stays until it is dismissed (×) or the next action replaces it, with a
button for the action that helps ("Unload from chat", "Choose another file…") right
beside it. The text comes from files and servers, so it is shown literally.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QToolButton, QWidget

from ui import theme
from ui.untrusted import PlainLabel

NOTE_MS = 8000


class NoticeLine(QWidget):
    def __init__(self, text: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.label = PlainLabel(text)
        self.label.setWordWrap(True)  # paths are long; never widen the window
        self.action_button = QPushButton()
        self.action_button.hide()
        self.close_button = QToolButton()
        self.close_button.setText("×")
        self.close_button.setToolTip("Dismiss")
        self.close_button.setAutoRaise(True)
        self.close_button.hide()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.action_button)
        layout.addWidget(self.close_button)
        self._fade = QTimer(self, singleShot=True)
        self._fade.timeout.connect(self.clear)
        self._action: Callable[[], object] | None = None
        self.close_button.clicked.connect(self.clear)
        self.action_button.clicked.connect(self._on_action)
        self.error = False

    def text(self) -> str:
        return self.label.text()

    def note(self, text: str, ms: int = NOTE_MS) -> None:
        """A passing note (done, started): it clears itself after ``ms``."""
        self._show(text, error=False)
        if ms > 0:
            self._fade.start(ms)

    def fail(self, text: str, action: str = "",
             do: Callable[[], object] | None = None) -> None:
        """An error: stays until dismissed or replaced, with the action that helps."""
        self._show(text, error=True)
        self._action = do
        self.action_button.setText(action)
        self.action_button.setVisible(bool(action) and do is not None)

    def clear(self) -> None:
        self._show("", error=False)

    def _show(self, text: str, error: bool) -> None:
        self._fade.stop()
        self.error = error
        self._action = None
        self.action_button.hide()
        self.label.setStyleSheet(theme.colour_style(theme.ERROR) if error else "")
        self.label.setText(text)
        self.close_button.setVisible(error)

    def _on_action(self) -> None:
        action = self._action
        self.clear()
        if action is not None:
            action()
