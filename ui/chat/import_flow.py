"""File → Import conversations…: read off the GUI thread, store, then say how it went.

The reading and storing are :mod:`app.chat.importer`'s; this adapts them to the window:
a file dialog, a background thread, the imported conversation opened, a line in the
status bar, and the problems (line by line) in a message box that does not block.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from app.chat.importer import ImportReport, import_file
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

        def work() -> ImportReport:
            return import_file(self.chat.store, path)

        self.background.run(work, lambda report: self._on_done(path, report),
                            self._on_failed, name="import-conversations")

    def _on_done(self, path: Path, report: ImportReport) -> None:
        """Says exactly what was stored: each conversation is stored whole or not at all,
        and an import that stopped early keeps (and counts) what came before."""
        self.chat.conversations_changed.emit()
        if report.ids:
            self.chat.open_conversation(report.ids[0])
        summary = f"Imported {count(len(report.ids), 'conversation')} from {path.name}"
        problems = list(report.problems)
        if report.skipped():
            summary += f"; {count(report.skipped(), 'entry', 'entries')} skipped"
        if report.stopped:
            summary += "; the rest of the file was not imported"
            problems.insert(0, report.stopped)
        if problems:
            self._show_problems(summary, problems, report.more_problems)
        tell(self.window, summary)
        self.finished.emit(summary, problems)

    def _on_failed(self, exc: BaseException) -> None:
        """Only reached when nothing was stored (import_file raises only then)."""
        text = f"Could not import: {exc}"
        tell(self.window, text)
        self._show_problems("Nothing was imported", [str(exc)])
        self.finished.emit(text, [str(exc)])

    def _show_problems(self, summary: str, problems: list[str], uncounted: int = 0) -> None:
        """Shown as text (it quotes the file), and without blocking the window."""
        lines = problems[:SHOWN_PROBLEMS]
        more = len(problems) - len(lines) + uncounted
        if more > 0:
            lines.append(f"… and {more:,} more")
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
