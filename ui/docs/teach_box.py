"""Teaching the shown collection, from the Documents tab (:mod:`app.docs.teaching`).

*Draft questions* asks the chat's model (in a worker of its own, so that the chat stays
usable; seconds per question on a small CPU) for the question each picked sentence
answers; the kept drafts become corrections, listed in the Datasets tab to edit or
remove before Teach, and every fourth is held out. *Compare* asks the held-out questions
four ways — the base and its taught version, each alone and with the passages — and
shows the table with every answer, base beside taught. The questions are the model's,
the answers the document's: both are shown as plain text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.docs import teaching
from app.models.library import ModelRecord
from app.models.versions import ActiveVersions
from app.workspace import Workspace
from ui.background import Background
from ui.untrusted import PlainLabel


class TeachBox(QGroupBox):
    progressed = Signal(int, int)            # questions drafted, in all
    drafted = Signal(object)                 # (drafts, corrections added)
    compared = Signal(object)                # Comparison

    def __init__(self, workspace: Workspace, model: Callable[[], str | None],
                 parent: QWidget | None = None) -> None:
        super().__init__("Teach this collection", parent)
        self.workspace = workspace
        self._model = model
        self.collection = ""
        self.background = Background(self)
        self.count = QSpinBox()
        self.count.setRange(1, 500)
        self.count.setValue(12)
        self.count.setSuffix(" sentences")
        self.count.setToolTip("How many of the collection's sentences to draft a question for")
        self.draft_button = QPushButton("Draft questions")
        self.draft_button.setToolTip(
            "The chat model writes the question each sentence answers; the kept ones become "
            "corrections (Datasets tab) and every fourth is held out for Compare")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop drafting: the questions drafted so far are kept")
        self._stop = threading.Event()
        self._busy = self._drafting = False
        self.compare_button = QPushButton("Compare")
        self.compare_button.setToolTip(
            "Ask the held-out questions of the base and the taught version, each with and "
            "without this collection's passages")
        self.status = PlainLabel("Draft questions from this collection, review them in the "
                                 "Datasets tab, Teach, then Compare.")
        self.status.setWordWrap(True)
        self.results = QPlainTextEdit()
        self.results.setReadOnly(True)
        self.results.setMaximumHeight(180)
        self.results.setVisible(False)
        row = QHBoxLayout()
        for w in (self.count, self.draft_button, self.stop_button, self.compare_button):
            row.addWidget(w)
        row.addStretch(1)
        column = QVBoxLayout(self)
        column.addLayout(row)
        column.addWidget(self.status)
        column.addWidget(self.results)
        self.draft_button.clicked.connect(self.start_draft)
        self.compare_button.clicked.connect(self.start_compare)
        self.stop_button.clicked.connect(self._stop.set)
        self.progressed.connect(self._on_progress)
        self.show_collection("")

    def show_collection(self, name: str) -> None:
        self.collection = name
        self._buttons()

    def _base(self) -> ModelRecord | None:
        name = self._model()
        if not name:
            self.status.setText("Choose a model in the chat first: it drafts the questions.")
            return None
        base = ActiveVersions(self.workspace.home).base_name(name)
        return self.workspace.library.get(base)

    def start_draft(self) -> None:
        base = self._base()
        if base is None or not self.collection or self._busy:
            return
        collection, n = self.collection, self.count.value()
        self.status.setText(f"Drafting questions about {collection} with {base.name} "
                            "(a worker of its own starts first)…")
        self._stop.clear()
        self._set_busy(True, drafting=True)
        self.background.run(
            lambda: teaching.draft_collection(self.workspace, collection, base, n,
                                              self.progressed.emit, self._stop.is_set),
            self._on_drafted, self._on_failed, name="hearth-doc-draft")

    def start_compare(self) -> None:
        base = self._base()
        if base is None or not self.collection or self._busy:
            return
        collection = self.collection
        self.status.setText(f"Asking the held-out questions about {collection}, four ways…")
        self._set_busy(True)
        self.background.run(
            lambda: teaching.compare_collection(self.workspace, collection, base),
            self._on_compared, self._on_failed, name="hearth-doc-compare")

    def _on_progress(self, done: int, total: int) -> None:
        self.status.setText(f"Drafting: {done} of {total} sentences asked")

    def _on_drafted(self, result: tuple[list[teaching.Draft], list[object]]) -> None:
        drafts, added = result
        self._set_busy(False)
        held = sum(d.held_out for d in drafts)
        dropped = [d for d in drafts if d.dropped]
        self.status.setText(
            f"{len(added)} questions added as corrections (Datasets tab: edit or remove "
            f"them, then Teach), {held} held out for Compare, {len(dropped)} dropped.")
        self._show("\n".join(d.line() for d in drafts))
        self.drafted.emit(result)

    def _on_compared(self, result: teaching.Comparison) -> None:
        self._set_busy(False)
        self.status.setText(" · ".join(f"{w.name}: {w.right} of {len(w.answers)}"
                                       for w in result.ways)
                            + ("" if result.taught else " (nothing taught yet)"))
        lines = list(result.lines())
        for i, q in enumerate(result.questions):
            lines.append(f"\n{q.question}\n  document: {q.answer}")
            for w in result.ways:
                a = w.answers[i]
                lines.append(f"  {w.name} ({'right' if a.right else 'wrong'}): {a.text}")
        self._show("\n".join(lines))
        self.compared.emit(result)

    def _on_failed(self, exc: BaseException) -> None:
        self._set_busy(False)
        self.status.setText(f"Stopped: {exc}")

    def _show(self, text: str) -> None:
        self.results.setPlainText(text)  # the model's and the document's words: plain
        self.results.setVisible(True)

    def _set_busy(self, busy: bool, drafting: bool = False) -> None:
        self._busy, self._drafting = busy, busy and drafting
        self._buttons()

    def _buttons(self) -> None:
        for button in (self.draft_button, self.compare_button):
            button.setEnabled(bool(self.collection) and not self._busy)
        self.stop_button.setEnabled(self._drafting)

    def shutdown(self) -> None:
        self._stop.set()
        self.background.shutdown()
