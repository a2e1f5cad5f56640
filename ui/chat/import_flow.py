"""File → Import conversations…: read off the GUI thread, store, then say how it went.

The reading and storing are :mod:`app.chat.importer`'s; this adapts them to the window:
a file dialog, a background thread, the imported conversation opened, a line in the
status bar, and the problems (line by line) in a message box that does not block.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from app.chat.importer import ImportResult, import_into, read_conversations
from app.units import count
from ui.background import Background
from ui.chat.chat_view_model import ChatViewModel
from ui.status_note import tell

SHOWN_PROBLEMS = 12


class ConversationImporter(QObject):
    finished = Signal(str, list)  # the summary line, the problems

    def __init__(self, chat: ChatViewModel, parent: QWidget) -> None:
        super().__init__(parent)
        self.chat = chat
        self.window = parent
        self.background = Background(self)
        self.box: QMessageBox | None = None

    def choose(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Import conversations", str(Path.home()),
            "Conversations (*.json *.jsonl);;All files (*)")
        if path:
            self.start(Path(path))

    def start(self, path: Path) -> None:
        tell(self.window, f"Importing conversations from {path.name}…")

        def work() -> tuple[ImportResult, list[int]]:
            result = read_conversations(path)
            return result, import_into(self.chat.store, result)

        self.background.run(work, lambda done: self._on_done(path, *done), self._on_failed,
                            name="import-conversations")

    def _on_done(self, path: Path, result: ImportResult, ids: list[int]) -> None:
        self.chat.conversations_changed.emit()
        if ids:
            self.chat.open_conversation(ids[0])
        summary = f"Imported {count(len(ids), 'conversation')} from {path.name}"
        if result.problems:
            summary += f"; {count(len(result.problems), 'entry', 'entries')} skipped"
            self._show_problems(summary, result.problems)
        tell(self.window, summary)
        self.finished.emit(summary, result.problems)

    def _on_failed(self, exc: BaseException) -> None:
        text = f"Could not import: {exc}"
        tell(self.window, text)
        self._show_problems("Nothing was imported", [str(exc)])
        self.finished.emit(text, [str(exc)])

    def _show_problems(self, summary: str, problems: list[str]) -> None:
        """Shown as text (it quotes the file), and without blocking the window."""
        lines = problems[:SHOWN_PROBLEMS]
        if len(problems) > SHOWN_PROBLEMS:
            lines.append(f"… and {len(problems) - SHOWN_PROBLEMS} more")
        # One plain-text label: an informative text would guess at markup.
        box = QMessageBox(QMessageBox.Icon.Warning, "Import conversations",
                          summary + ".\n\n" + "\n".join(lines),
                          QMessageBox.StandardButton.Ok, self.window)
        box.setTextFormat(Qt.TextFormat.PlainText)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.box = box

    def shutdown(self) -> None:
        self.background.shutdown()
