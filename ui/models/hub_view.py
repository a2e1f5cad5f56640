"""The hub view: find a GGUF model on Hugging Face, pick a file, download it.

First visit shows the curated list from ``resources/``; a search replaces it with the
hub's results. Choosing a repository lists its GGUF files with quantization, size and
a fit verdict; Download starts a :class:`ui.models.download_task.DownloadTask`, shown as a row
with a progress bar, speed, time left, Pause/Resume and Cancel. Partial downloads left
by an earlier session appear as paused rows, ready to resume. Every network call runs
off the GUI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.models.curated import CuratedModel, load_curated
from app.models.hub import HubClient, HubFile, SearchResult
from app.models.memory_fit import SystemMemory, check_fit, estimate_memory
from app.models.model_info import ModelInfo
from app.models.partial_download import hub_file_from_pending, pending_downloads
from app.units import format_bytes
from app.workspace import Workspace
from ui.background import Background
from ui.models.download_row import DownloadRow
from ui.models.download_task import DownloadTask, TaskState
from ui.models.library_model import FIT_COLOURS
from ui.notice_line import NoticeLine
from ui.untrusted import esc
from ui.untrusted import tooltip as safe_tooltip

log = logging.getLogger("hearth.ui")


class HubView(QWidget):
    model_installed = Signal(object)  # ModelRecord
    chat_requested = Signal(str)
    download_added = Signal(object)  # DownloadRow, emitted before its transfer starts
    activity = Signal(str)  # "" or a short summary of running downloads, e.g. "2 · 36%"

    def __init__(self, workspace: Workspace,
                 client_factory: Callable[[], HubClient] = HubClient,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.client_factory = client_factory
        self.background = Background(self)
        self.system: SystemMemory | None = None
        self.n_ctx = workspace.settings.load.n_ctx  # the context the fit verdicts assume
        self.tasks: list[DownloadTask] = []
        self.rows: list[DownloadRow] = []
        self.files: list[HubFile] = []
        self.shape: ModelInfo | None = None  # the repository's model shape, from one header
        self.current_repo: str | None = None
        self.curated = load_curated()
        self._build()
        self._connect()
        self.show_curated()
        self._restore_pending()

    # ------------------------------------------------------------- layout

    def _build(self) -> None:
        self.query = QLineEdit()
        self.query.setPlaceholderText("Search Hugging Face for GGUF models, e.g. llama 3.2 1b")
        self.search_button = QPushButton("Search")
        self.results_label = QLabel()
        self.results_label.setTextFormat(Qt.TextFormat.RichText)
        self.results = QTableWidget(0, 4)
        self.results.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.results.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.results.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.results.verticalHeader().hide()
        self.results.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        self.results.horizontalHeader().setStretchLastSection(True)
        self.files_label = QLabel("Choose a model to see its files.")
        self.files_label.setTextFormat(Qt.TextFormat.RichText)
        self.files_table = QTableWidget(0, 4)
        self.files_table.setHorizontalHeaderLabels(["File", "Quant", "Size", "Fits?"])
        self.files_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.files_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.files_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.files_table.verticalHeader().hide()
        self.files_table.horizontalHeader().setSectionResizeMode(
            0, QHeaderView.ResizeMode.Stretch)
        self.download_button = QPushButton("Download")
        self.download_button.setEnabled(False)
        # Errors stay (with "Try again") until dismissed or replaced; see NoticeLine.
        self.status = NoticeLine()
        self._retry: Callable[[], object] | None = None

        top = QHBoxLayout()
        top.addWidget(self.query, 1)
        top.addWidget(self.search_button)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.results_label)
        left_layout.addWidget(self.results)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.files_label)
        right_layout.addWidget(self.files_table)
        right_layout.addWidget(self.download_button, 0, Qt.AlignmentFlag.AlignRight)
        split = QSplitter()
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([560, 440])
        self.downloads_box = QWidget()
        self.downloads_layout = QVBoxLayout(self.downloads_box)
        self.downloads_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.downloads_box)
        scroll.setMinimumHeight(100)
        scroll.setMaximumHeight(220)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addWidget(QLabel("<b>Downloads</b>"))
        layout.addWidget(scroll)
        layout.addWidget(self.status)

    def _connect(self) -> None:
        self.search_button.clicked.connect(self._on_search_clicked)
        self.query.returnPressed.connect(self._on_search_clicked)
        self.results.itemSelectionChanged.connect(self._on_result_selected)
        self.files_table.itemSelectionChanged.connect(self._on_file_selected)
        self.download_button.clicked.connect(self._on_download_clicked)

    # ------------------------------------------------------------- results

    def show_curated(self) -> None:
        self.results_label.setText("<b>Recommended small chat models</b> "
                                   "(search above for anything else)")
        self.results.clearContents()
        self.results.setColumnCount(6)
        self.results.setHorizontalHeaderLabels(["Model", "Params", "Size", "Licence",
                                                "Fine-tune", "Good at"])
        self.results.setRowCount(len(self.curated))
        for row, m in enumerate(self.curated):
            self._set_row(self.results, row, [m.title, m.parameters, m.size_text,
                                              m.licence, "yes" if m.trainable else
                                              "chat only", m.good_at], m.repo, m.good_at)
        for column, width in enumerate((130, 42, 68, 105, 66)):
            self.results.setColumnWidth(column, width)
        self.results.setWordWrap(True)
        self.results.resizeRowsToContents()

    def search(self, text: str) -> None:
        text = text.strip()
        if not text:
            self.show_curated()
            return
        self.status.note(f"Searching for {text!r}…", ms=0)
        self._retry = lambda: self.search(text)
        self.search_button.setEnabled(False)
        self.background.run(lambda: self.client_factory().search(text),
                            lambda results: self._show_results(text, results),
                            self._on_error)

    def _show_results(self, text: str, results: list[SearchResult]) -> None:
        self.search_button.setEnabled(True)
        self.status.note("" if results else f"No GGUF models found for {text!r}.", ms=0)
        plural = "" if len(results) == 1 else "s"
        self.results_label.setText(f"<b>{len(results)} GGUF model{plural}</b> matching "
                                   f"{esc(repr(text))}")
        self.results.clearContents()
        self.results.setColumnCount(4)
        self.results.setHorizontalHeaderLabels(["Repository", "Downloads", "Likes", "Updated"])
        self.results.setRowCount(len(results))
        for row, r in enumerate(results):
            name = r.repo + (" (gated: needs a token)" if r.gated else "")
            self._set_row(self.results, row, [name, f"{r.downloads:,}", f"{r.likes:,}",
                                              (r.updated or "")[:10]], r.repo)
        self.results.resizeColumnsToContents()
        self.results.resizeRowsToContents()

    @staticmethod
    def _set_row(table: QTableWidget, row: int, texts: list[str], key: Any,
                 tooltip: str | None = None) -> None:
        for column, text in enumerate(texts):
            item = QTableWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, key)
            if tooltip:
                item.setToolTip(safe_tooltip(tooltip))
            table.setItem(row, column, item)

    def _on_search_clicked(self) -> None:
        self.search(self.query.text())

    def _on_result_selected(self) -> None:
        items = self.results.selectedItems()
        if items:
            self.open_repo(items[0].data(Qt.ItemDataRole.UserRole))

    # --------------------------------------------------------------- files

    def open_repo(self, repo: str) -> None:
        self.current_repo = repo
        self.files = []
        self.shape = None
        self.files_label.setText(f"Reading the files of <b>{esc(repo)}</b>…")
        self.files_table.setRowCount(0)
        self.download_button.setEnabled(False)
        self._retry = lambda: self.open_repo(repo)
        self.background.run(lambda: self.client_factory().list_files(repo),
                            lambda files: self._on_files(repo, files), self._on_error)

    def _on_files(self, repo: str, files: list[HubFile]) -> None:
        if repo != self.current_repo:
            return  # the person has moved on to another repository
        self._show_files(repo, files)
        sample = next((f for f in files if not f.is_split), None)
        if sample is not None:
            # Every quantization of a repository shares one shape: one header suffices.
            self.background.run(lambda: self.client_factory().describe_file(sample),
                                lambda shape: self._on_shape(repo, shape),
                                self._on_shape_failed, name="hub-header")

    def _on_shape_failed(self, exc: BaseException) -> None:
        # The fit column just stays without the KV cache; worth a log line, not a dialog.
        log.warning("reading a hub file's header failed: %s", exc)

    def _on_shape(self, repo: str, shape: ModelInfo) -> None:
        if repo == self.current_repo:
            self.shape = shape
            self._show_files(repo, self.files)

    def _show_files(self, repo: str, files: list[HubFile]) -> None:
        selected = self.selected_file()
        self.files = files
        about = ""
        if self.shape is not None and self.shape.n_layers:
            ctx = self.shape.context_length
            # Read from a stranger's file header: text, never markup.
            about = esc(f" · {self.shape.architecture}, {self.shape.n_layers} layers"
                        + (f", trained for {ctx:,} tokens" if ctx else ""))
        self.files_label.setText(f"<b>{esc(repo)}</b>: {len(files)} GGUF files{about}"
                                 if files else f"<b>{esc(repo)}</b> has no GGUF files.")
        self.files_table.setRowCount(len(files))
        n_ctx = self.n_ctx
        for row, f in enumerate(files):
            fit = ""
            verdict = None
            if self.system is not None and f.size:
                shape = replace(self.shape or ModelInfo(), file_size=f.size)
                verdict = check_fit(estimate_memory(shape, n_ctx), self.system)
                fit = verdict.summary
            note = " (split: not supported)" if f.is_split else ""
            self._set_row(self.files_table, row, [f.filename + note, f.quant or "?",
                                                  format_bytes(f.size), fit], row)
            if verdict is not None:
                cell = self.files_table.item(row, 3)
                cell.setBackground(FIT_COLOURS[verdict.level])
                cell.setToolTip(safe_tooltip(
                    verdict.detail if verdict.estimate.exact else
                    verdict.detail + " (the KV cache is added once the file's header has "
                    "been read)"))
        self.files_table.resizeColumnsToContents()
        keep = next((i for i, f in enumerate(files) if selected is not None
                     and f.filename == selected.filename), None)
        recommended = next((i for i, f in enumerate(files) if f.quant == "Q4_K_M"), None)
        if keep is not None or recommended is not None:
            self.files_table.selectRow(keep if keep is not None else recommended)

    def _on_file_selected(self) -> None:
        f = self.selected_file()
        self.download_button.setEnabled(f is not None and not f.is_split)

    def selected_file(self) -> HubFile | None:
        rows = {i.row() for i in self.files_table.selectedItems()}
        if len(rows) != 1:
            return None
        row = rows.pop()
        return self.files[row] if 0 <= row < len(self.files) else None

    # ----------------------------------------------------------- downloads

    def _on_download_clicked(self) -> None:
        f = self.selected_file()
        if f is not None:
            self.start_download(f)

    def start_download(self, file: HubFile) -> DownloadRow | None:
        for row in self.rows:
            if row.task.file.sha256 == file.sha256 and row.task.state in (TaskState.RUNNING,
                                                                           TaskState.PAUSED):
                self.status.note(f"{file.filename} is already in the downloads below.")
                return row
        try:
            task = DownloadTask(self.workspace.home, self.workspace.library, file, self,
                                endpoint=self.client_factory().endpoint)
        except Exception as exc:  # shown to the person
            self.status.fail(str(exc))
            return None
        row = self._add_row(task)
        task.start()
        return row

    def _add_row(self, task: DownloadTask) -> DownloadRow:
        row = DownloadRow(task)
        row.chat_requested.connect(self.chat_requested)
        task.finished.connect(self.model_installed)
        task.failed.connect(lambda text: self.status.fail(text))
        for signal in (task.progress, task.paused, task.cancelled, task.failed, task.finished):
            signal.connect(self._on_task_changed)
        self.tasks.append(task)
        self.rows.append(row)
        self.downloads_layout.insertWidget(self.downloads_layout.count() - 1, row)
        self.download_added.emit(row)
        return row

    def _on_task_changed(self, *_: object) -> None:
        running = [r for r in self.rows if r.task.state == TaskState.RUNNING]
        if not running:
            self.activity.emit("")
            return
        done = sum(r.bar.value() for r in running) / (10 * len(running))
        self.activity.emit(f"{len(running)} · {done:.0f}%")

    def _restore_pending(self) -> None:
        """Partial downloads from an earlier session, shown paused, ready to resume."""
        for pending in pending_downloads(self.workspace.home):
            try:
                task = DownloadTask(self.workspace.home, self.workspace.library,
                                    hub_file_from_pending(pending), self)
            except Exception:  # a sidecar we cannot use is skipped
                continue
            task.state = TaskState.PAUSED
            self._add_row(task).show_paused(pending.done, pending.size)

    def _on_error(self, exc: BaseException) -> None:
        self.search_button.setEnabled(True)
        self.status.fail(str(exc), "Try again", self._retry)
        if self.current_repo and not self.files:
            self.files_label.setText(f"Could not read {esc(self.current_repo)}.")

    def set_context(self, n_ctx: int) -> None:
        self.n_ctx = n_ctx
        if self.current_repo and self.files:
            self._show_files(self.current_repo, self.files)

    def set_system(self, system: SystemMemory) -> None:
        self.system = system
        if self.current_repo and self.files:
            self._show_files(self.current_repo, self.files)

    def shutdown(self) -> None:
        """Pause running downloads (keeping their partial files) and join all threads."""
        for task in self.tasks:
            task.pause()
        for task in self.tasks:
            task.wait()
        self.background.shutdown()


__all__ = ["CuratedModel", "DownloadRow", "HubView"]
