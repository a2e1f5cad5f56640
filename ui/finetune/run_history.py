"""Run history: every fine-tuning run with where it came from and what it made.

The list is read from the run folders (:func:`app.finetune.runs.folder.list_runs`), so
runs started from the CLI or before a crash appear too. A run can be opened (its chart
and summary), resumed when :func:`app.finetune.runs.status.can_resume` says so, compared
with its base, or deleted with everything it produced (after asking).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.errors import HearthError
from app.finetune.runs.delete import delete_run, run_files
from app.finetune.runs.folder import RunInfo, list_runs
from app.finetune.runs.status import RunStatus
from app.models.library import Library
from app.paths import HearthHome
from app.units import count, format_bytes, format_duration, format_token_rate
from ui.untrusted import SafeTextBrowser, esc

COLUMNS = ("Started", "Status", "Base model", "Data", "Steps", "Val loss", "Output")
STATUS_WORDS = {RunStatus.REFUSED: "refused by the gate"}
"""A status whose bare word would mislead; the others read as they are."""


def status_text(run: RunInfo) -> str:
    """The Status column of a run: its status, in words a person reads at a glance."""
    return STATUS_WORDS.get(run.status, str(run.status))


class RunHistoryView(QWidget):
    open_requested = Signal(str)
    resume_requested = Signal(str)
    compare_requested = Signal(str)
    deleted = Signal(str)

    def __init__(self, home: HearthHome, library: Library, parent: QWidget | None = None
                 ) -> None:
        super().__init__(parent)
        self.home = home
        self.library = library
        self.runs: list[RunInfo] = []
        self.busy_run: str | None = None  # the run training now: not deletable
        layout = QVBoxLayout(self)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.table.doubleClicked.connect(self._on_open)
        self.details = SafeTextBrowser()
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.table)
        splitter.addWidget(self.details)
        splitter.setSizes([300, 200])
        layout.addWidget(splitter, 1)
        buttons = QHBoxLayout()
        self.empty_label = QLabel("")
        self.refresh_button = QPushButton("Refresh")
        self.open_button = QPushButton("Open")
        self.resume_button = QPushButton("Resume")
        self.compare_button = QPushButton("Compare with base")
        self.delete_button = QPushButton("Delete…")
        self.refresh_button.clicked.connect(self.refresh)
        self.open_button.clicked.connect(self._on_open)
        self.resume_button.clicked.connect(self._on_resume)
        self.compare_button.clicked.connect(self._on_compare)
        self.delete_button.clicked.connect(self._on_delete)
        buttons.addWidget(self.empty_label, 1)
        for button in (self.refresh_button, self.open_button, self.resume_button,
                       self.compare_button, self.delete_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.refresh()

    # ------------------------------------------------------------------ state

    def refresh(self) -> None:
        selected = self.current_run_id()
        self.runs = list(reversed(list_runs(self.home)))  # newest first
        self.table.setRowCount(len(self.runs))
        for row, run in enumerate(self.runs):
            steps = f"{run.step}/{run.total_steps}" if run.total_steps else str(run.step)
            status = "training" if run.run_id == self.busy_run else status_text(run)
            values = (run.created_at.replace("T", " ")[:16], status, run.base_model,
                      run.dataset, steps,
                      f"{run.val_loss:.3f}" if run.val_loss is not None else "–",
                      run.output or "–")
            for column, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setData(Qt.ItemDataRole.UserRole, run.run_id)
                self.table.setItem(row, column, item)
            if run.run_id == selected:
                self.table.selectRow(row)
        self.empty_label.setText("" if self.runs else "No fine-tuning runs yet.")
        self._on_selection()

    def current_run_id(self) -> str | None:
        items = self.table.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def current_run(self) -> RunInfo | None:
        run_id = self.current_run_id()
        return next((r for r in self.runs if r.run_id == run_id), None)

    def select(self, run_id: str) -> None:
        for row, run in enumerate(self.runs):
            if run.run_id == run_id:
                self.table.selectRow(row)

    def _on_selection(self) -> None:
        run = self.current_run()
        busy = run is not None and run.run_id == self.busy_run
        self.open_button.setEnabled(run is not None)
        self.resume_button.setEnabled(run is not None and run.resumable
                                      and self.busy_run is None)
        self.compare_button.setEnabled(run is not None and bool(run.gguf_path))
        self.delete_button.setEnabled(run is not None and not busy)
        self.details.setHtml(self._details_html(run) if run else "")

    def _details_html(self, run: RunInfo) -> str:
        try:
            files = run_files(self.home, self.library, run.run_id)
        except (OSError, HearthError) as exc:  # RunError: its run.json is unreadable
            return f"<p>This run's folder cannot be read: {esc(exc)}</p>"
        spec, s = files.spec, files.summary
        data, settings = spec.dataset, spec.settings
        length = (f"{settings.max_steps} steps" if settings.max_steps
                  else f"{settings.epochs:g} epochs")
        rows = [
            ("Run", run.run_id),
            ("Base model", f"{esc(spec.base.name)} <small>({esc(spec.base.path)})</small>"),
            ("Data", f"{data.path} — {data.format}, {data.records} records "
                     f"({data.train_records} train / {data.val_records} validation), "
                     f"sha256 {data.sha256[:12]}…"),
            ("Settings", f"rank {settings.rank}, alpha {settings.alpha:g}, lr "
                         f"{settings.learning_rate:g}, {length}, batch "
                         f"{settings.batch_size}×{settings.grad_accumulation}, max "
                         f"{settings.max_seq_len} tokens, seed {settings.seed}"),
            ("Export", f"{spec.export.quant} → {spec.out_name}"
                       if run.status != RunStatus.REFUSED
                       else "nothing: the teach gate refused the result, so no model was made"),
        ]
        if run.status == RunStatus.REFUSED:
            rows.append(("Refused", run.refusal or "the gate's report gives no reason"))
        if s is not None:
            rows.append(("Result", f"validation loss {s.val_loss or 0:.4f}, "
                                   f"{s.steps} steps in {format_duration(s.train_seconds)}, "
                                   f"{format_token_rate(s.tokens_per_s)} on {s.device}"))
        if files.model is not None:
            rows.append(("In the library", files.model.name))
        rows.append(("On disk", f"{format_bytes(files.size_bytes())} in "
                                f"{count(len(files.existing()), 'place')}"))
        if run.error:
            rows.append(("Error", run.error))
        # Every value comes from the run's files (names, paths, errors): escaped. The one
        # row built with markup (Base model) escaped its parts above.
        body = "".join(f"<tr><td><b>{k}</b></td><td>{v if k == 'Base model' else esc(v)}"
                       "</td></tr>" for k, v in rows)
        return f"<table cellspacing=4>{body}</table>"

    # ---------------------------------------------------------------- actions

    def _on_open(self, *_args: object) -> None:
        run_id = self.current_run_id()
        if run_id:
            self.open_requested.emit(run_id)

    def _on_resume(self) -> None:
        run_id = self.current_run_id()
        if run_id:
            self.resume_requested.emit(run_id)

    def _on_compare(self) -> None:
        run_id = self.current_run_id()
        if run_id:
            self.compare_requested.emit(run_id)

    def _on_delete(self) -> None:
        run = self.current_run()
        if run is None or run.run_id == self.busy_run:
            return
        files = run_files(self.home, self.library, run.run_id)
        what = ["the run folder (data split, checkpoints, logs)"]
        if files.adapter.exists():
            what.append("the LoRA adapter")
        if files.gguf.exists() or files.gguf_f16.exists():
            what.append("the exported GGUF model files")
        if files.model is not None:
            what.append(f"the library entry “{files.model.name}”")
        # The model's name is a stranger's text: escaped inside markup, it shows as is.
        answer = QMessageBox.question(
            self, "Delete this run?",
            "<p>" + esc(f"This deletes {', '.join(what)} ({format_bytes(files.size_bytes())})"
                        ". It cannot be undone.") + "</p>")
        if answer != QMessageBox.StandardButton.Yes:
            return
        delete_run(self.home, self.library, run.run_id)
        self.refresh()
        self.deleted.emit(run.run_id)
