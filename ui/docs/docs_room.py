"""The Documents tab: the home's collections and their files; adding files or folders.

An add reads, chunks and embeds every file (seconds to minutes), so it runs on a
:class:`~ui.background.Background` thread: the indexer reports each file as it goes
(queued back here as :attr:`DocumentsRoom.file_done`) to a progress bar, Cancel is a flag
the indexer asks between files and batches (the file being read then is left as it was),
and each file that could not be read is listed with its reason while the rest go on.
File names and reasons are shown as plain text. The embedding worker is the chat's
(:class:`~app.docs.shelf.Shelf`): one model in memory for adding and asking. Below the
files, :class:`~ui.docs.teach_box.TeachBox` teaches the collection shown.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.docs.indexer import AddReport, DocumentIndexer, FileOutcome
from app.docs.shelf import Shelf
from app.docs.store import DEFAULT_COLLECTION
from app.units import format_bytes
from app.workspace import Workspace
from ui.background import Background
from ui.docs.teach_box import TeachBox
from ui.untrusted import PlainLabel


class DocumentsRoom(QWidget):
    changed = Signal()                        # collections or their files changed
    file_done = Signal(object, int, int)      # FileOutcome, files done, files in all
    add_finished = Signal(object)             # AddReport

    def __init__(self, shelf: Shelf, workspace: Workspace | None = None,
                 model: Callable[[], str | None] | None = None,
                 parent: QWidget | None = None) -> None:
        """``workspace`` and ``model`` (the chat's model name) give the room its Teach
        box; without them it only adds, lists and removes."""
        super().__init__(parent)
        self.shelf = shelf
        self.background = Background(self)
        self._cancel = threading.Event()
        self.collections = QListWidget()
        self.files = QTreeWidget()
        self.files.setHeaderLabels(["File", "Kind", "Pages", "Passages", "Size"])
        self.files.setRootIsDecorated(False)
        self.files.setSelectionMode(QTreeWidget.SelectionMode.ExtendedSelection)
        self.remove = QPushButton("Remove from collection")
        self.remove.setToolTip("Forget the selected files' passages (the files themselves "
                               "stay where they are)")
        self.teach = TeachBox(workspace, model) if workspace is not None and model else None
        self.target = QComboBox()
        self.target.setEditable(True)
        self.target.setToolTip("The collection new files go to (type a new name to make one)")
        self.add_files = QPushButton("Add files…")
        self.add_folder = QPushButton("Add folder…")
        self.cancel = QPushButton("Cancel")
        self.progress = QProgressBar()
        self.status = PlainLabel()
        self.status.setWordWrap(True)
        self.problems = QPlainTextEdit()
        self.problems.setReadOnly(True)
        self.problems.setPlaceholderText("Files that could not be added are listed here.")
        self.problems.setMaximumHeight(120)
        self.problems.setVisible(False)  # until a file could not be added
        self._layout()
        self.collections.currentTextChanged.connect(self._show_files)
        self.add_files.clicked.connect(self._on_add_files)
        self.add_folder.clicked.connect(self._on_add_folder)
        self.cancel.clicked.connect(self._cancel.set)
        self.remove.clicked.connect(self.remove_selected)
        self.files.itemSelectionChanged.connect(
            lambda: self.remove.setEnabled(bool(self.files.selectedItems())))
        self.file_done.connect(self._on_file_done)
        self.refresh()
        self._set_busy(False)

    def _layout(self) -> None:
        left = QWidget()
        column = QVBoxLayout(left)
        column.addWidget(QLabel("Collections"))
        column.addWidget(self.collections, 1)
        right = QWidget()
        main = QVBoxLayout(right)
        row = QHBoxLayout()
        row.addWidget(QLabel("Add to"))
        row.addWidget(self.target, 1)
        for button in (self.add_files, self.add_folder, self.cancel):
            row.addWidget(button)
        main.addLayout(row)
        main.addWidget(self.progress)
        main.addWidget(self.status)
        main.addWidget(self.files, 1)
        below = QHBoxLayout()
        below.addStretch(1)
        below.addWidget(self.remove)
        main.addLayout(below)
        main.addWidget(self.problems)
        if self.teach is not None:
            main.addWidget(self.teach)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(1, 3)
        QVBoxLayout(self).addWidget(split)

    def refresh(self) -> None:
        names = [c.name for c in self.shelf.store.collections()]
        shown = self.collections.currentItem()
        current = shown.text() if shown is not None else (names[0] if names else "")
        target = self.target.currentText() or DEFAULT_COLLECTION
        self.collections.clear()
        self.collections.addItems(names)
        matches = [i for i, n in enumerate(names) if n == current]
        if matches:
            self.collections.setCurrentRow(matches[0])
        self.target.clear()
        self.target.addItems(sorted({*names, DEFAULT_COLLECTION}))
        self.target.setCurrentText(target)
        self._show_files(current)

    def _show_files(self, collection: str) -> None:
        self.files.clear()
        self.remove.setEnabled(False)
        if self.teach is not None:
            self.teach.show_collection(collection)
        if not collection:
            return
        for f in self.shelf.store.files(collection):
            item = QTreeWidgetItem([  # item text is plain
                Path(f.path).name, f.kind, str(f.pages or ""), str(f.chunks),
                format_bytes(f.size)])
            item.setToolTip(0, f.path)
            item.setData(0, Qt.ItemDataRole.UserRole, f.path)
            self.files.addTopLevelItem(item)

    def remove_selected(self) -> None:
        """Forget the selected files of the collection shown (its index, not the files)."""
        shown = self.collections.currentItem()
        paths = [item.data(0, Qt.ItemDataRole.UserRole)
                 for item in self.files.selectedItems()]
        if shown is None or not paths or self.background.busy:
            return
        removed = self.shelf.store.remove_paths(shown.text(), paths)
        self.status.setText(f"{shown.text()}: {removed} file{'s' if removed != 1 else ''} "
                            "removed (the files themselves are untouched)")
        self.refresh()
        self.changed.emit()

    # ------------------------------------------------------------------ adding

    def _on_add_files(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Add files", "", "Documents (*.pdf *.docx *.html *.htm *.md *.markdown "
            "*.txt);;All files (*)")
        if paths:
            self.add_paths([Path(p) for p in paths])

    def _on_add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder")
        if folder:
            self.add_paths([Path(folder)])

    def add_paths(self, paths: list[Path], collection: str | None = None) -> None:
        """Index ``paths`` into ``collection`` (the "Add to" box's) off the GUI thread."""
        if self.background.busy:
            return
        name = (collection or self.target.currentText()).strip() or DEFAULT_COLLECTION
        self._cancel.clear()
        self.problems.clear()
        self.problems.setVisible(False)
        self.progress.setRange(0, 0)  # until the files are counted
        self.status.setText(f"Adding to {name}… (the embedding model starts first)")
        self._set_busy(True)
        indexer = DocumentIndexer(
            self.shelf.store, lambda texts: self.shelf.embedder().embed(texts),
            on_file=self.file_done.emit, cancelled=self._cancel.is_set)
        self.background.run(lambda: indexer.add(paths, name), self._on_added,
                            self._on_failed, name="hearth-doc-add")

    def _on_file_done(self, outcome: FileOutcome, done: int, total: int) -> None:
        self.progress.setRange(0, total)
        self.progress.setValue(done)
        self.status.setText(f"{done} of {total}: {Path(outcome.path).name} {outcome.status}")
        if outcome.status == "skipped":
            self.problems.appendPlainText(f"{outcome.path}: {outcome.reason}")
            self.problems.setVisible(True)

    def _on_added(self, report: AddReport) -> None:
        self._set_busy(False)
        counts = ", ".join(f"{report.count(s)} {s}" for s in ("indexed", "unchanged",
                                                              "skipped"))
        self.status.setText(f"{report.collection}: {counts}"
                            + (" (cancelled; what was added is kept)"
                               if report.cancelled else ""))
        self.refresh()
        self.changed.emit()
        self.add_finished.emit(report)

    def _on_failed(self, exc: BaseException) -> None:
        self._set_busy(False)
        self.status.setText(f"The add stopped: {exc}. What was added before is kept.")
        self.refresh()
        self.changed.emit()
        self.add_finished.emit(None)

    def _set_busy(self, busy: bool) -> None:
        self.add_files.setEnabled(not busy)
        self.add_folder.setEnabled(not busy)
        self.cancel.setEnabled(busy)
        self.progress.setVisible(busy or self.progress.value() > 0)
        if not busy:
            self.progress.setRange(0, max(1, self.progress.maximum()))

    def shutdown(self) -> None:
        self._cancel.set()
        self.background.shutdown()
        if self.teach is not None:
            self.teach.shutdown()
