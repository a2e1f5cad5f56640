"""The numbered sources under a reply that was answered from documents.

Each source is a link-like button, "[1] kettle.pdf, page 2", whose text is set as plain
text (a file name is a stranger's as much as the passage is); clicking one opens the
passage it names in a small dialog, as plain, read-only text. The sources come from the
stored message (:attr:`app.chat.conversations.Message.sources`), so an old reply, a
branch or a reopened conversation shows them the same.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.conversations import Message
from app.docs.citing import Source
from ui.untrusted import PlainLabel


class PassageDialog(QDialog):
    """One cited passage: where it is, then its text exactly as the document has it."""

    def __init__(self, source: Source, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"[{source.number}] {source.where}")
        self.resize(560, 380)
        layout = QVBoxLayout(self)
        heading = f" — {source.heading}" if source.heading else ""
        self.where = PlainLabel(f"{source.source}{heading}\n{source.where}, characters "
                                f"{source.char_start}-{source.char_end} (collection "
                                f"{source.collection})")
        self.where.setWordWrap(True)
        self.text = QPlainTextEdit(source.text)
        self.text.setReadOnly(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(self.where)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)


class SourcesBox(QWidget):
    """"Sources:" and a button per cited passage; hidden for a reply without sources."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.sources: list[Source] = []
        self.buttons: list[QToolButton] = []
        self.dialog: PassageDialog | None = None
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 4, 0, 0)
        self._layout.setSpacing(0)
        self.title = QLabel("Sources:")
        self.title.setObjectName("statsLabel")
        self._layout.addWidget(self.title)
        self.setVisible(False)

    def show_sources(self, message: Message | None) -> None:
        sources = list(message.sources) if message is not None else []
        if sources == self.sources:
            return
        self.sources = sources
        for button in self.buttons:
            button.deleteLater()
        self.buttons = []
        for source in sources:
            button = QToolButton()
            button.setObjectName("sourceLink")
            button.setAutoRaise(True)
            button.setCursor(Qt.CursorShape.PointingHandCursor)
            button.setText(f"[{source.number}] {source.where}")  # plain: a button's text
            button.setToolTip("Show this passage")
            button.clicked.connect(lambda _=False, s=source: self.open_passage(s))
            self._layout.addWidget(button, 0, Qt.AlignmentFlag.AlignLeft)
            self.buttons.append(button)
        self.setVisible(bool(sources))

    def open_passage(self, source: Source) -> PassageDialog:
        if self.dialog is not None:
            self.dialog.close()
        self.dialog = PassageDialog(source, self)
        self.dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.dialog.destroyed.connect(self._forget_dialog)
        self.dialog.open()
        return self.dialog

    def _forget_dialog(self) -> None:
        self.dialog = None
