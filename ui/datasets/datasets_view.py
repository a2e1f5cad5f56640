"""Teach from chat, in the window: correcting a reply, and the collected corrections.

:class:`CorrectReplyDialog` is what *Correct this* on an assistant reply opens: the
person rewrites the reply, and the conversation up to it is saved as a training example
with the original kept as the rejected alternative. :class:`DatasetsView` lists what
was collected, lets the person edit or delete examples, and shows how many there are;
the Fine-tune tab trains on the same store.
"""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.chat.conversations import ConversationStore
from app.chat.corrections import CorrectionStore, TrainingExample
from app.chat.tool_prompt import shown_reply
from app.chat.tools import Tool, ToolCall
from app.errors import HearthError
from app.units import count
from ui import theme
from ui.datasets.call_editor import CallEditor
from ui.untrusted import PlainLabel, warn


class CorrectReplyDialog(QDialog):
    """Rewrite one assistant reply; accepted, it becomes a training example.

    A reply that called tools (``calls``) is corrected with a :class:`CallEditor` under the
    words: the person picks the tool among ``tools`` (those the conversation offers, kept
    with the example) and edits the arguments of the model's first call."""

    def __init__(self, corrections: CorrectionStore, store: ConversationStore,
                 message_id: int, original: str, parent: QWidget | None = None,
                 calls: list[ToolCall] | None = None, tools: list[Tool] | None = None
                 ) -> None:
        super().__init__(parent)
        self.corrections = corrections
        self.store = store
        self.message_id = message_id
        self.original = original
        self.tools = tools or []
        self.example: TrainingExample | None = None
        self.setWindowTitle("Correct this reply")
        self.resize(640, 560 if calls else 480)
        layout = QVBoxLayout(self)
        explain = QLabel("Write the reply the model should have given. The conversation up "
                         "to here is saved as a training example; the original reply is "
                         "kept beside it as the rejected answer.")
        explain.setWordWrap(True)
        layout.addWidget(explain)
        layout.addWidget(QLabel("Original reply:"))
        shown = shown_reply(original, json.dumps([c.to_openai() for c in calls or []]))
        self.original_view = QPlainTextEdit(shown, readOnly=True)
        self.original_view.setMaximumHeight(120)
        layout.addWidget(self.original_view)
        layout.addWidget(QLabel("Corrected reply:" if not calls else
                                "Corrected reply: its words (may stay empty with a call)"))
        self.editor = QPlainTextEdit(original)
        layout.addWidget(self.editor, 1)
        self.call_editor = CallEditor(calls[0], self.tools) if calls else None
        if self.call_editor is not None:
            layout.addWidget(self.call_editor, 2)
        self.error = PlainLabel()
        self.error.setWordWrap(True)
        self.error.setStyleSheet(theme.colour_style(theme.ERROR))
        layout.addWidget(self.error)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Save).setText("Save as training example")
        buttons.accepted.connect(self._on_save)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.editor.setFocus()

    def _on_save(self) -> None:
        text = self.editor.toPlainText().strip()
        call = self.call_editor.call() if self.call_editor is not None else None
        same_call = self.call_editor.unchanged() if self.call_editor is not None else True
        if text == self.original.strip() and same_call:
            self.error.setText("The corrected reply is the same as the original; change it "
                               "first.")
            return
        try:
            self.example = self.corrections.add_from_conversation(
                self.store, self.message_id, text, [call] if call else None, self.tools)
        except HearthError as exc:
            self.error.setText(str(exc)[:1].upper() + str(exc)[1:] + ".")
            return
        self.accept()


class DatasetsView(QWidget):
    """The collected corrections: browse, edit, delete, export."""

    changed = Signal(int)  # the number of examples now collected

    def __init__(self, corrections: CorrectionStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.corrections = corrections
        layout = QVBoxLayout(self)
        header = QHBoxLayout()
        self.count_label = PlainLabel()
        self.count_label.setStyleSheet("font-weight: 600")
        self.export_button = QPushButton("Export JSONL…")
        self.export_button.clicked.connect(self._on_export)
        header.addWidget(self.count_label, 1)
        header.addWidget(self.export_button)
        layout.addLayout(header)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        self.list = QListWidget()
        self.list.currentItemChanged.connect(self._on_selected)
        splitter.addWidget(self.list)
        detail = QWidget()
        form = QVBoxLayout(detail)
        form.setContentsMargins(0, 0, 0, 0)
        form.addWidget(QLabel("Conversation before the reply:"))
        self.prompt_view = QPlainTextEdit(readOnly=True)
        form.addWidget(self.prompt_view, 2)
        form.addWidget(QLabel("Corrected reply (trained on):"))
        self.corrected_edit = QPlainTextEdit()
        form.addWidget(self.corrected_edit, 2)
        form.addWidget(QLabel("Original reply (kept as rejected):"))
        self.rejected_view = QPlainTextEdit(readOnly=True)
        form.addWidget(self.rejected_view, 1)
        buttons = QHBoxLayout()
        self.save_button = QPushButton("Save changes")
        self.save_button.clicked.connect(self._on_save)
        self.delete_button = QPushButton("Delete")
        self.delete_button.clicked.connect(self._on_delete)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.save_button)
        form.addLayout(buttons)
        splitter.addWidget(detail)
        splitter.setSizes([300, 600])
        layout.addWidget(splitter, 1)
        self.refresh()

    def refresh(self) -> None:
        selected = self.current_id()
        self.list.clear()
        examples = self.corrections.list()
        for example in examples:
            question = next((m["content"] for m in reversed(example.prompt)
                             if m["role"] == "user"), "")
            origin = f"  (from {_clip(example.source, 40)})" if example.source else ""
            item = QListWidgetItem(f"{_clip(question, 60)}{origin}\n"
                                   f"→ {_clip(example.shown, 60)}")
            item.setData(Qt.ItemDataRole.UserRole, example.id)
            self.list.addItem(item)
            if example.id == selected:
                self.list.setCurrentItem(item)
        n = len(examples)
        self.count_label.setText(f"{n} correction{'s' if n != 1 else ''} collected"
                                 if n else "No corrections yet: use “Correct this” on a reply "
                                 "in a chat to collect one.")
        has = self.list.currentItem() is not None
        for widget in (self.save_button, self.delete_button, self.corrected_edit):
            widget.setEnabled(has)
        self.export_button.setEnabled(n > 0)
        if not has:
            self.prompt_view.clear()
            self.corrected_edit.clear()
            self.rejected_view.clear()
        self.changed.emit(n)

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item else None

    def _on_selected(self, item: QListWidgetItem | None, _previous: object = None) -> None:
        if item is None:
            return
        example = self.corrections.get(item.data(Qt.ItemDataRole.UserRole))
        self.prompt_view.setPlainText("\n\n".join(
            f"{m['role']}: {shown_reply(m['content'], m.get('tool_calls', ''))}"
            for m in example.prompt))
        # A corrected call is shown written out, not edited here: correct the reply
        # again in its chat (the tools' schemas check it there).
        self.corrected_edit.setPlainText(example.shown)
        self.rejected_view.setPlainText(example.shown_rejected)
        self.delete_button.setEnabled(True)
        for widget in (self.save_button, self.corrected_edit):
            widget.setEnabled(not example.calls)

    def _on_save(self) -> None:
        example_id = self.current_id()
        if example_id is None:
            return
        try:
            self.corrections.update(example_id, self.corrected_edit.toPlainText())
        except HearthError as exc:
            warn(self, "Cannot save", str(exc).capitalize() + ".")
            return
        self.refresh()

    def _on_delete(self) -> None:
        example_id = self.current_id()
        if example_id is None:
            return
        answer = QMessageBox.question(self, "Delete this correction?",
                                      "It will no longer be used for fine-tuning.")
        if answer == QMessageBox.StandardButton.Yes:
            self.corrections.delete(example_id)
            self.refresh()

    def _on_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export corrections", "corrections.jsonl",
                                              "JSON Lines (*.jsonl)")
        if path:
            n = self.corrections.export_jsonl(Path(path))
            self.count_label.setText(f"Exported {count(n, 'example')} to {path}")


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
