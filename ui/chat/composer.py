"""Where the person writes: Enter sends, Shift+Enter starts a new line.

The box grows with its text up to a third of the window, then scrolls. Its one button
is Send while the model is idle and Stop while a reply streams or its tool calls run
(Esc stops too).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPlainTextEdit, QPushButton, QWidget

from ui.chat.chat_view_model import ChatViewModel, ModelState


class Composer(QFrame):
    def __init__(self, chat: ChatViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chat = chat
        self.setObjectName("composer")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.editor = QPlainTextEdit()
        self.editor.setObjectName("composerEdit")
        self.editor.setFrameShape(QFrame.Shape.NoFrame)
        self.editor.setPlaceholderText("Send a message…  (Enter sends, Shift+Enter new line)")
        self.editor.setTabChangesFocus(True)
        self.editor.installEventFilter(self)
        # Two buttons shown in turn: restyling one button on every change of state
        # re-applies the window's style sheet, which costs a frame.
        self.send_button = QPushButton("Send")
        self.send_button.setObjectName("sendButton")
        self.send_button.setToolTip("Send (Enter)")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setObjectName("stopButton")
        self.stop_button.setToolTip("Stop the reply (Esc)")
        self.stop_button.hide()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 8, 8, 8)
        layout.addWidget(self.editor, 1)
        for button in (self.send_button, self.stop_button):
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            layout.addWidget(button, 0, Qt.AlignmentFlag.AlignBottom)

        self.send_button.clicked.connect(self._on_send)
        self.stop_button.clicked.connect(self._on_stop)
        self.editor.textChanged.connect(self._on_text_changed)
        chat.model_state_changed.connect(self._update)
        chat.reply_started.connect(self._update)
        chat.reply_finished.connect(self._update)
        chat.reply_stopping.connect(self._update)
        chat.messages_changed.connect(self._update)
        chat.tools.steps_changed.connect(self._update)  # a call running is a reply under way
        chat.conversation_opened.connect(self._update)
        self._on_text_changed()
        self._update()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if watched is self.editor and event.type() == QEvent.Type.Resize:
            self._on_text_changed()  # a narrower box wraps the hint onto more lines
        if watched is self.editor and event.type() == QEvent.Type.KeyPress:
            assert isinstance(event, QKeyEvent)
            if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
                    event.modifiers() & (Qt.KeyboardModifier.ShiftModifier
                                         | Qt.KeyboardModifier.AltModifier)):
                self._on_send()
                return True
        return super().eventFilter(watched, event)

    def focus(self) -> None:
        self.editor.setFocus(Qt.FocusReason.ShortcutFocusReason)

    @property
    def button(self) -> QPushButton:
        """The button on show: Stop while a reply is under way, else Send."""
        return self.stop_button if self.chat.busy else self.send_button

    def _on_stop(self) -> None:
        self.chat.stop()

    def _on_send(self) -> None:
        text = self.editor.toPlainText()
        if text.strip() and self.chat.send(text) is not None:
            self.editor.clear()

    def _on_text_changed(self) -> None:
        lines = max(1, self.editor.document().size().toSize().height())
        metrics = self.editor.fontMetrics()
        if not self.editor.toPlainText():  # the hint is shown whole, however it wraps
            # The box's own width: on its Resize its viewport has not followed yet.
            width = self.editor.contentsRect().width() - 2 * self.editor.document().documentMargin()
            hint = metrics.boundingRect(0, 0, max(1, int(width)), 1 << 16,
                                        Qt.TextFlag.TextWordWrap,
                                        self.editor.placeholderText())
            lines = max(lines, -(-hint.height() // max(1, metrics.lineSpacing())))
        limit = max(4, (self.window().height() // 3) // max(1, metrics.lineSpacing()))
        shown = min(lines, limit)
        self.editor.setFixedHeight(shown * metrics.lineSpacing() + 12)
        self._update()

    def _update(self, *_args: object) -> None:
        busy = self.chat.busy
        if self.stop_button.isHidden() == busy:
            self.stop_button.setVisible(busy)
            self.send_button.setVisible(not busy)
        stopping = self.chat.stopping  # said at once: the worker may take a moment
        self.stop_button.setText("Stopping…" if stopping else "Stop")
        self.stop_button.setEnabled(not stopping)
        ready = self.chat.state == ModelState.READY
        self.send_button.setEnabled(ready and bool(self.editor.toPlainText().strip()))
        self.send_button.setToolTip("Send (Enter)" if ready
                                    else "Waiting for the model to load")
