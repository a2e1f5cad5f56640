"""The Fine-tune tab: from a model and some examples to a better model, in one window.

Three pages: **Set up** (model, data with its check and a preview of the first records
as they will be trained, preset with its estimate, the Advanced panel, Start),
**Training** (progress, live loss chart, speed and memory, Cancel/Resume, and the
summary with *Chat with it* and *Compare* when it ends) and **History** (every run).

Training runs in the worker process through :class:`ui.finetune.training_bridge.TrainingBridge`;
nothing slow happens on the GUI thread (datasets are checked on a helper thread). A run
interrupted by a crash or a closed window is offered for Resume when the tab opens.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QDialog,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.corrections import CorrectionStore
from app.finetune import protocol as tp
from app.finetune.client import RunError, create_run, list_runs, register_result, run_dir
from app.finetune.datasets import Dataset, DatasetError, load_dataset
from app.finetune.plan import (
    DataShape,
    ModelFacts,
    PreviewRecord,
    RunPlan,
    measure,
    model_facts,
    plan_run,
    preview,
)
from app.finetune.runs import model_of_run, run_files
from app.finetune.settings import PRESETS, Machine, preset
from app.machine.memory import free_memory_bytes
from app.models.library import LibraryError, ModelRecord
from app.units import format_bytes, format_duration
from app.workspace import Workspace
from ui import theme
from ui.background import Background
from ui.finetune.compare_view import CompareView
from ui.finetune.run_history import RESUMABLE, RunHistoryView
from ui.finetune.settings_form import SettingsForm
from ui.finetune.training_bridge import TrainingBridge
from ui.finetune.training_view import TrainingView
from ui.untrusted import PlainLabel, SafeTextBrowser, esc, warn

PREVIEW_RECORDS = 3
PAGE_SETUP, PAGE_TRAINING, PAGE_HISTORY = range(3)
CLOSED_RUN_KEY = "finetune_run_to_offer"  # stopped by a window close or a crash


def preview_html(records: list[PreviewRecord]) -> str:
    """The preview as HTML: template text plain, the trained-on spans highlighted."""
    blocks = []
    for record in records:
        parts = []
        for text, trained in record.segments:
            escaped = html.escape(text)
            if trained:
                escaped = (f'<span style="background-color:{theme.HIGHLIGHT_BACKGROUND}; '
                           f'color:{theme.HIGHLIGHT_TEXT}">{escaped}</span>')
            parts.append(escaped)
        blocks.append(f'<p style="color:{theme.MUTED}; margin-bottom:2px">Record from line '
                      f'{record.line}</p><pre style="white-space:pre-wrap; margin-top:0">'
                      f'{"".join(parts)}</pre>')
    return "".join(blocks)


class _Checker(QObject):
    """Checks a dataset file on a helper thread and reports back on the GUI thread."""

    done = Signal(object, object)  # (path, Dataset | DatasetError)

    def check(self, path: Path) -> threading.Thread:
        def work() -> None:
            try:
                result: object = load_dataset(path)
            except DatasetError as exc:
                result = exc
            except Exception as exc:  # noqa: BLE001 - any failure is shown, never raised
                result = DatasetError(path, [f"{path.name} cannot be read: {exc}"])
            self.done.emit(path, result)

        thread = threading.Thread(target=work, daemon=True, name="dataset-check")
        thread.start()
        return thread


class FineTuneTab(QWidget):
    chat_requested = Signal(str)  # library name of a tuned model to open a chat with
    # Dataset or DatasetError, after each check; for a usable dataset, once its records
    # are laid out by the model's template too (preview and estimate shown).
    dataset_checked = Signal(object)
    run_started = Signal(str)  # run id
    run_ended = Signal(str, str)  # run id, status: finished, cancelled, failed, interrupted

    def __init__(self, workspace: Workspace, corrections: CorrectionStore | None = None,
                 unload_chat: Callable[[], None] | None = None,
                 reload_chat: Callable[[], None] | None = None,
                 memory_available: Callable[[], int] | None = None,
                 machine: Machine | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.workspace = workspace
        self.home = workspace.home
        self.library = workspace.library
        self.corrections = corrections
        self.unload_chat = unload_chat
        self.reload_chat = reload_chat
        self.memory_available = memory_available or free_memory_bytes
        self.machine = machine or Machine.detect()
        self.dataset: Dataset | None = None
        self.dataset_path: Path | None = None  # what is checked: the file or the corrections
        self.file_path: Path | None = None  # the file chosen or dropped
        self.plan: RunPlan | None = None
        self.bridge: TrainingBridge | None = None
        self.shown_run: str | None = None  # the run on the Training page
        self.tuned_model: ModelRecord | None = None
        self.compare_dialog: QDialog | None = None
        self._facts: dict[str, ModelFacts] = {}
        # The data laid out by a model's template, by (model, dataset sha): rendered on
        # a helper thread, since the template is a stranger's program (see _lay_out).
        self._shapes: dict[tuple[str, str], DataShape | ValueError] = {}
        self._previews: dict[tuple[str, str], list[PreviewRecord] | ValueError] = {}
        self._laying_out: tuple[str, str] | None = None
        self._unannounced: Dataset | None = None  # checked, waiting for its layout
        self._layouts = Background(self)
        self._chat_unloaded = False
        self._checker = _Checker(self)
        self._checker.done.connect(self._on_dataset_checked)
        self._check_thread: threading.Thread | None = None

        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.pages = QTabWidget()
        self.pages.setDocumentMode(True)
        self.pages.addTab(self._build_setup(), "Set up")
        self.training = TrainingView()
        self.training.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.training.resume_button.clicked.connect(self._on_resume_clicked)
        self.training.chat_button.clicked.connect(self._on_chat_clicked)
        self.training.compare_button.clicked.connect(self._on_compare_clicked)
        self.training.new_run_button.clicked.connect(self._on_new_run_clicked)
        self.pages.addTab(self.training, "Training")
        self.history = RunHistoryView(self.home, self.library)
        self.history.open_requested.connect(self._on_open_run)
        self.history.resume_requested.connect(self._on_resume_run)
        self.history.compare_requested.connect(self._on_compare_run)
        self.history.deleted.connect(self._on_run_deleted)
        self.pages.addTab(self.history, "History")
        self.pages.setTabEnabled(PAGE_TRAINING, False)
        self.pages.currentChanged.connect(self._on_page_changed)
        layout.addWidget(self.pages)
        self.setAcceptDrops(True)
        self.refresh_models()
        self._refresh_corrections_count()
        self._offer_resume()

    # ================================================================ set-up page

    def _build_setup(self) -> QWidget:
        page = QWidget()
        outer = QVBoxLayout(page)
        self.resume_banner = QFrame()
        self.resume_banner.setFrameShape(QFrame.Shape.StyledPanel)
        self.resume_banner.setStyleSheet(
            f"QFrame {{ background: {theme.NOTICE_BACKGROUND}; border-radius: 4px }}"
            f" QLabel {{ color: {theme.NOTICE_TEXT} }}")
        banner = QHBoxLayout(self.resume_banner)
        self.resume_label = QLabel()
        self.resume_label.setTextFormat(Qt.TextFormat.RichText)
        self.resume_label.setWordWrap(True)
        self.banner_resume_button = QPushButton("Resume")
        self.banner_resume_button.clicked.connect(self._on_banner_resume)
        self.banner_dismiss_button = QPushButton("Dismiss")
        self.banner_dismiss_button.clicked.connect(self._on_banner_dismiss)
        banner.addWidget(self.resume_label, 1)
        banner.addWidget(self.banner_resume_button)
        banner.addWidget(self.banner_dismiss_button)
        self.resume_banner.hide()
        self.banner_run: str | None = None
        outer.addWidget(self.resume_banner)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        left = QWidget()
        form = QVBoxLayout(left)
        form.setContentsMargins(0, 0, 6, 0)

        form.addWidget(self._heading("1. Model"))
        self.model_combo = QComboBox()
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        form.addWidget(self.model_combo)

        form.addWidget(self._heading("2. Data"))
        self.source_group = QButtonGroup(self)
        file_row = QHBoxLayout()
        self.file_radio = QRadioButton("A file")
        self.file_radio.setChecked(True)
        self.choose_button = QPushButton("Choose…")
        self.choose_button.clicked.connect(self._on_choose_file)
        file_row.addWidget(self.file_radio)
        file_row.addStretch(1)
        file_row.addWidget(self.choose_button)
        form.addLayout(file_row)
        self.file_label = PlainLabel("Choose or drop a .jsonl, .json or .txt file: OpenAI chat, "
                                 "ShareGPT, Alpaca or plain text.")
        self.file_label.setWordWrap(True)
        self.file_label.setStyleSheet(theme.colour_style(theme.MUTED))
        form.addWidget(self.file_label)
        self.corrections_radio = QRadioButton("Corrections from chats")
        self.corrections_radio.setEnabled(self.corrections is not None)
        form.addWidget(self.corrections_radio)
        self.source_group.addButton(self.file_radio)
        self.source_group.addButton(self.corrections_radio)
        self.corrections_radio.toggled.connect(self._on_source_changed)
        self.validation_label = PlainLabel("")
        self.validation_label.setWordWrap(True)
        self.validation_label.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addWidget(self.validation_label)
        self.issues_view = QPlainTextEdit(readOnly=True)
        self.issues_view.setMaximumHeight(110)
        self.issues_view.hide()
        form.addWidget(self.issues_view)

        form.addWidget(self._heading("3. How hard to train"))
        preset_row = QVBoxLayout()
        preset_row.setSpacing(2)
        self.preset_group = QButtonGroup(self)
        self.preset_buttons: dict[str, QRadioButton] = {}
        for name in PRESETS:
            button = QRadioButton(name.capitalize())
            self.preset_group.addButton(button)
            self.preset_buttons[name] = button
            preset_row.addWidget(button)
            button.toggled.connect(self._on_preset_toggled)
        form.addLayout(preset_row)
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        form.addWidget(self.estimate_label)

        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced settings")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setStyleSheet("QToolButton { border: none }")
        self.advanced_toggle.toggled.connect(self._on_advanced_toggled)
        form.addWidget(self.advanced_toggle)
        self.settings_form = SettingsForm()
        self.settings_form.changed.connect(self._on_settings_changed)
        self.settings_form.hide()
        form.addWidget(self.settings_form)
        form.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(left)
        scroll.viewport().setAutoFillBackground(False)  # blend into the tab page
        left.setAutoFillBackground(False)
        column = QWidget()
        column_layout = QVBoxLayout(column)
        column_layout.setContentsMargins(0, 0, 0, 0)
        column_layout.addWidget(scroll, 1)

        start_row = QHBoxLayout()
        self.start_error = PlainLabel("")
        self.start_error.setWordWrap(True)
        self.start_error.setStyleSheet(theme.colour_style(theme.ERROR))
        self.start_button = QPushButton("Start fine-tuning")
        self.start_button.setMinimumHeight(34)
        self.start_button.setStyleSheet("font-weight: 600; padding: 4px 18px")
        self.start_button.clicked.connect(self._on_start_clicked)
        start_row.addWidget(self.start_error, 1)
        start_row.addWidget(self.start_button)
        column_layout.addLayout(start_row)
        splitter.addWidget(column)

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(6, 0, 0, 0)
        right_layout.addWidget(self._heading("Preview: the first records as the model will "
                                             "see them"))
        legend = QLabel(f'<span style="background-color:{theme.HIGHLIGHT_BACKGROUND}; color:'
                        f'{theme.HIGHLIGHT_TEXT}">&nbsp;highlighted&nbsp;</span> text is what '
                        "the model learns to write (it carries the loss); the rest is "
                        "context, laid out by the model's own chat template.")
        legend.setWordWrap(True)
        right_layout.addWidget(legend)
        self.preview_view = SafeTextBrowser()
        self.preview_view.setPlaceholderText("Choose some data to see how it will be trained.")
        right_layout.addWidget(self.preview_view, 1)
        splitter.addWidget(right)
        splitter.setSizes([430, 620])
        outer.addWidget(splitter, 1)
        self.preset_buttons["balanced"].setChecked(True)
        return page

    @staticmethod
    def _heading(text: str) -> QLabel:
        label = QLabel(text)
        label.setStyleSheet("font-weight: 600; margin-top: 8px")
        return label

    # -------------------------------------------------------------- the model

    def refresh_models(self) -> None:
        """Re-read the library (call after models are added or removed)."""
        current = self.model_combo.currentText()
        self.model_combo.blockSignals(True)
        self.model_combo.clear()
        for record in self.library.list():
            self.model_combo.addItem(record.name, record)
        self.model_combo.blockSignals(False)
        if current and self.model_combo.findText(current) >= 0:
            self.model_combo.setCurrentText(current)
        else:
            default = self.library.default()
            if default is not None:
                self.model_combo.setCurrentText(default.name)
        self._on_model_changed()

    def set_model(self, name: str) -> bool:
        """Pick ``name`` as the base model (e.g. the one in the current chat)."""
        index = self.model_combo.findText(name)
        if index < 0:
            self.refresh_models()
            index = self.model_combo.findText(name)
        if index >= 0:
            self.model_combo.setCurrentIndex(index)
        return index >= 0

    def current_model(self) -> ModelRecord | None:
        return self.model_combo.currentData()

    def _facts_for(self, record: ModelRecord) -> ModelFacts | None:
        if record.name not in self._facts:
            try:
                self._facts[record.name] = model_facts(record)
            except (OSError, ValueError) as exc:
                self.start_error.setText(f"{record.name} cannot be read: {exc}")
                return None
        return self._facts[record.name]

    def _on_model_changed(self, *_args: object) -> None:
        self._update_preview()
        self._update_plan()

    # --------------------------------------------------------------- the data

    def _refresh_corrections_count(self) -> None:
        if self.corrections is None:
            self.corrections_radio.setToolTip("Not available here")
            return
        n = self.corrections.count()
        self.corrections_radio.setText(f"Corrections from chats ({n} collected)")

    def refresh_corrections(self, _count: int | None = None) -> None:
        """Connect to DatasetsView.changed: updates the count and, when the corrections
        are the chosen data, checks them again."""
        self._refresh_corrections_count()
        if self.corrections_radio.isChecked():
            self._use_corrections()

    def _on_source_changed(self, corrections: bool) -> None:
        if corrections:
            self._use_corrections()
        elif self.file_path is not None:
            self.check_path(self.file_path)
        else:
            self._clear_dataset("Choose or drop a data file.")

    def _use_corrections(self) -> None:
        if self.corrections is None:
            return
        self._refresh_corrections_count()
        if self.corrections.count() == 0:
            self._clear_dataset("No corrections yet: use “Correct this” on a reply in a chat "
                                "to collect some.")
            return
        self.check_path(self.export_corrections())

    def export_corrections(self) -> Path:
        """Write the corrections to the home's datasets folder, named by their content
        (so a run's provenance keeps pointing at exactly what it trained on)."""
        assert self.corrections is not None
        self.home.datasets.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(suffix=".jsonl", dir=self.home.datasets)
        os.close(fd)
        tmp = Path(tmp_name)
        self.corrections.export_jsonl(tmp)
        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:12]
        target = self.home.datasets / f"corrections-{digest}.jsonl"
        if target.exists():
            tmp.unlink()
        else:
            os.replace(tmp, target)
        return target

    def _on_choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose training data", str(Path.home()),
            "Datasets (*.jsonl *.json *.txt *.md);;All files (*)")
        if path:
            self.load_file(Path(path))

    def load_file(self, path: Path) -> None:
        """Use ``path`` as the data (what Choose… and a drop do)."""
        self.file_path = path
        for radio in (self.file_radio, self.corrections_radio):
            radio.blockSignals(True)
        self.file_radio.setChecked(True)
        for radio in (self.file_radio, self.corrections_radio):
            radio.blockSignals(False)
        self.file_label.setText(str(path))
        self.file_label.setStyleSheet("")
        self.check_path(path)

    def check_path(self, path: Path) -> None:
        self.dataset_path = path
        self.dataset = None
        self.validation_label.setStyleSheet("")
        self.validation_label.setText(f"Checking {path.name}…")
        self.issues_view.hide()
        self.start_button.setEnabled(False)
        self._check_thread = self._checker.check(path)

    def _clear_dataset(self, message: str) -> None:
        self.dataset = None
        self.validation_label.setStyleSheet(theme.colour_style(theme.MUTED))
        self.validation_label.setText(message)
        self.issues_view.hide()
        self.preview_view.clear()
        self._update_plan()

    def _on_dataset_checked(self, path: Path, result: object) -> None:
        if path != self.dataset_path:
            return  # a newer choice replaced this one
        if isinstance(result, DatasetError):
            self.dataset = None
            self.validation_label.setStyleSheet(theme.colour_style(theme.ERROR))
            n = len(result.issues)
            self.validation_label.setText(
                f"{path.name} cannot be used: {n} problem{'s' if n != 1 else ''}, "
                f"{result.usable} usable record{'s' if result.usable != 1 else ''}. "
                "Fix these lines (or remove them) and choose the file again.")
            self.issues_view.setPlainText("\n".join(result.issues))
            self.issues_view.show()
            self.preview_view.clear()
        else:
            assert isinstance(result, Dataset)
            self.dataset = result
            s = result.stats
            self.validation_label.setStyleSheet(theme.colour_style(theme.SUCCESS))
            self.validation_label.setText(
                f"✓ {path.name}: {result.format} format, {s.records} records"
                + (f" ({s.duplicates_dropped} duplicates dropped)" if s.duplicates_dropped
                   else "")
                + f", about {s.approx_tokens:,} tokens; longest record on line "
                  f"{s.longest_record_line} ({s.longest_record_chars:,} characters).")
            self.issues_view.hide()
            # The preset's epochs follow the dataset's size, so choose them again.
            self.settings_form.blockSignals(True)
            self._apply_preset()
            self.settings_form.blockSignals(False)
            self._unannounced = result
            self._update_preview()
        self._update_plan()
        if self._laying_out is None or self._unannounced is not result:
            self._unannounced = None
            self.dataset_checked.emit(result)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802 - Qt's name
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802 - Qt's name
        urls = event.mimeData().urls()
        if urls and urls[0].isLocalFile():
            self.pages.setCurrentIndex(PAGE_SETUP)
            self.load_file(Path(urls[0].toLocalFile()))
            event.acceptProposedAction()

    # ---------------------------------------------------- preview and estimate

    def _layout_key(self) -> tuple[str, str] | None:
        record = self.current_model()
        if self.dataset is None or record is None:
            return None
        return (record.name, self.dataset.sha256)

    def _lay_out(self, facts: ModelFacts) -> None:
        """Render the preview and the estimate's sample (up to 500 records) through the
        model's chat template on a helper thread.

        The template is a stranger's program: each render is bounded (app.chat.template
        limits), and none of it runs on the GUI thread. The preview and the plan show
        when it is done (_on_laid_out)."""
        key = self._layout_key()
        if key is None or key in self._shapes or key == self._laying_out:
            return
        self._laying_out = key
        dataset, template = self.dataset, facts.template
        assert dataset is not None

        def work() -> tuple[list[PreviewRecord] | ValueError, DataShape | ValueError]:
            try:
                records: list[PreviewRecord] | ValueError = preview(dataset, template,
                                                                   PREVIEW_RECORDS)
            except ValueError as exc:  # ChatTemplateError included
                records = exc
            try:
                shape: DataShape | ValueError = measure(dataset, template)
            except ValueError as exc:
                shape = exc
            return records, shape

        self.preview_view.setPlainText("Laying out the records with the model's chat "
                                       "template…")
        self._layouts.run(work, lambda result: self._on_laid_out(key, result),
                          lambda exc: self._on_laid_out(key, (ValueError(str(exc)),
                                                              ValueError(str(exc)))),
                          name="template-layout")

    def _on_laid_out(self, key: tuple[str, str],
                     result: tuple[list[PreviewRecord] | ValueError, DataShape | ValueError]
                     ) -> None:
        if self._laying_out == key:
            self._laying_out = None
        for cache in (self._previews, self._shapes):
            if len(cache) >= 8:  # a few models and datasets back is plenty
                cache.clear()
        self._previews[key], self._shapes[key] = result
        if key != self._layout_key():
            # The person chose another model or dataset meanwhile: lay that one out.
            self._update_preview()
            self._update_plan()
            return
        self._update_preview()
        self._update_plan()
        if self._unannounced is not None and self._unannounced is self.dataset:
            announced, self._unannounced = self._unannounced, None
            self.dataset_checked.emit(announced)

    def _update_preview(self) -> None:
        record = self.current_model()
        key = self._layout_key()
        if key is None or record is None:
            return
        facts = self._facts_for(record)
        if facts is None:
            return
        records = self._previews.get(key)
        if records is None:
            self._lay_out(facts)
            return
        if isinstance(records, ValueError):
            self.preview_view.setPlainText(f"The model's chat template cannot lay out this "
                                           f"data: {records}")
            return
        self.preview_view.setHtml(preview_html(records))

    def selected_preset(self) -> str:
        return next(n for n, b in self.preset_buttons.items() if b.isChecked())

    def select_preset(self, name: str) -> None:
        self.preset_buttons[name].setChecked(True)

    def _on_preset_toggled(self, checked: bool) -> None:
        if checked:
            self._apply_preset()

    def _apply_preset(self) -> None:
        n = self.dataset.stats.records if self.dataset is not None else 100
        export = self.settings_form.export()
        self.settings_form.set_values(preset(self.selected_preset(), n, self.machine), export)

    def _on_settings_changed(self) -> None:
        self._update_plan()

    def _on_advanced_toggled(self, shown: bool) -> None:
        self.settings_form.setVisible(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown
                                          else Qt.ArrowType.RightArrow)

    def _update_plan(self) -> None:
        self.plan = None
        record = self.current_model()
        running = self.bridge is not None and self.bridge.alive
        if self.dataset is None or record is None:
            self.estimate_label.setText("")
            for name, button in self.preset_buttons.items():
                button.setText(name.capitalize())
            self.start_error.setText("" if record else "No model in the library yet: add "
                                     "one in the Models tab.")
            self.start_button.setEnabled(False)
            return
        try:
            settings = self.settings_form.lora()
            self.settings_form.export()
        except ValueError as exc:
            self.start_error.setText(str(exc).capitalize())
            self.start_button.setEnabled(False)
            return
        facts = self._facts_for(record)
        if facts is None:
            self.start_button.setEnabled(False)
            return
        key = (record.name, self.dataset.sha256)
        shape = self._shapes.get(key)
        if shape is None:
            self._lay_out(facts)
            self.estimate_label.setText("Measuring the records with the model's chat "
                                        "template…")
            self.start_button.setEnabled(False)
            return
        try:
            if isinstance(shape, ValueError):
                raise shape
            self.plan = plan_run(facts, self.dataset, settings, self.machine, shape)
            for name, button in self.preset_buttons.items():
                guess = plan_run(facts, self.dataset,
                                 preset(name, self.dataset.stats.records, self.machine),
                                 self.machine, shape).estimate
                button.setText(f"{name.capitalize()}: about {format_duration(guess.seconds)}, "
                               f"peak memory about {format_bytes(guess.peak_memory_bytes)}")
        except ValueError as exc:
            self.start_error.setText(str(exc).capitalize())
            self.start_button.setEnabled(False)
            return
        est = self.plan.estimate
        avail = self.memory_available()
        memory_note = ""
        if est.peak_memory_bytes > avail:
            memory_note = (f' <span style="color:{theme.ERROR}">(only '
                           f"{format_bytes(avail)} free now)</span>")
        self.estimate_label.setText(
            f"This run: about <b>{format_duration(est.seconds)}</b> on this "
            f"{'GPU' if self.machine.has_gpu else 'CPU'}, peak memory about "
            f"<b>{format_bytes(est.peak_memory_bytes)}</b>{memory_note}.<br>"
            f"{self.plan.total_steps} steps over {self.plan.train_records} training records "
            f"({self.plan.val_records} held out for validation); rank {settings.rank}, "
            f"learning rate {settings.learning_rate:g}.")
        self.start_error.setText("")
        self.start_button.setEnabled(not running)

    # ================================================================ training

    def is_training(self) -> bool:
        return self.bridge is not None and self.bridge.alive

    def _on_start_clicked(self) -> None:
        self.start()

    def start(self) -> str | None:
        """Create a run from the set-up page and start it; returns its id."""
        record = self.current_model()
        if self.is_training() or record is None or self.dataset_path is None:
            return None
        if self.corrections_radio.isChecked():
            # Pick up corrections added or edited since the data was checked.
            path = self.export_corrections()
            if path != self.dataset_path:
                try:
                    self.dataset = load_dataset(path)
                    self.dataset_path = path
                except DatasetError as exc:
                    self.start_error.setText(str(exc))
                    return None
        if self.dataset is None or self.plan is None:
            return None
        try:
            settings = self.settings_form.lora()
            export = self.settings_form.export()
        except ValueError as exc:
            self.start_error.setText(str(exc).capitalize())
            return None
        if not self._make_room(self.plan.estimate.peak_memory_bytes):
            return None
        try:
            run_id = create_run(self.home, record, self.dataset, settings, export)
        except (OSError, ValueError) as exc:
            self.start_error.setText(f"The run could not be created: {exc}")
            self._restore_chat()
            return None
        self._attach(run_id, resuming=False)
        return run_id

    def _make_room(self, needed: int) -> bool:
        """When memory is short, offer to unload the chat model; False cancels the start."""
        available = self.memory_available()
        if needed <= available:
            return True
        need, have = format_bytes(needed), format_bytes(available)
        if self.unload_chat is not None:
            answer = QMessageBox.question(
                self, "Free memory for training?",
                f"Training needs about {need} and {have} are free. Unload the chat model "
                "while it trains? It is loaded again when training ends.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No
                | QMessageBox.StandardButton.Cancel)
            if answer == QMessageBox.StandardButton.Cancel:
                return False
            if answer == QMessageBox.StandardButton.Yes:
                self.unload_chat()
                self._chat_unloaded = True
            return True
        answer = QMessageBox.question(
            self, "Memory is short",
            f"Training needs about {need} and only {have} are free; it may be slow or run "
            "out of memory. Start anyway?")
        return answer == QMessageBox.StandardButton.Yes

    def _restore_chat(self) -> None:
        if self._chat_unloaded:
            self._chat_unloaded = False
            if self.reload_chat is not None:
                self.reload_chat()

    def _attach(self, run_id: str, resuming: bool) -> None:
        """Show ``run_id`` on the Training page and start its worker."""
        self._show_run(run_id)
        self.resume_banner.hide()
        self._remember_closed_run(None)
        self.bridge = TrainingBridge(self.home, run_id, self)
        self.bridge.event.connect(self._on_event)
        self.training.status_label.setText("Resuming from the last checkpoint…" if resuming
                                  else "Starting the training worker…")
        self.training.status_label.setStyleSheet("")
        self.training.set_buttons(self.training.cancel_button)
        self.start_button.setEnabled(False)
        self.history.busy_run = run_id
        try:
            self.bridge.start()
        except OSError as exc:
            self._on_event(tp.WorkerExited(None, None, [], f"The training worker did not "
                                                           f"start: {exc}"))
            return
        self.history.refresh()
        self.run_started.emit(run_id)

    def _show_run(self, run_id: str) -> None:
        """Fill the Training page from the run's folder (the events so far)."""
        self.shown_run = run_id
        self.tuned_model = None
        files = run_files(self.home, self.library, run_id)
        spec = files.spec
        self.training.reset(f"{spec['out_name']} — {spec['base']['name']} taught with "
                            f"{Path(spec['dataset']['path']).name}")
        self.pages.setTabEnabled(PAGE_TRAINING, True)
        self.pages.setCurrentIndex(PAGE_TRAINING)
        events_file = files.folder / "events.jsonl"
        if events_file.exists():
            for line in events_file.read_text("utf-8", errors="replace").splitlines():
                try:
                    self.training.apply(tp.decode(line))
                except tp.TrainProtocolError:
                    continue

    def _on_event(self, event: object) -> None:
        if self.bridge is None or self.shown_run != self.bridge.run_id:
            return
        self._apply(event)

    def _apply(self, event: object) -> None:
        """One live event: shown by the Training page; the outcomes are acted on here."""
        self.training.apply(event)
        if isinstance(event, tp.Cancelled):
            self._ended("cancelled", f"Cancelled at step {event.step}. The checkpoint is "
                        "saved: Resume continues from there.")
        elif isinstance(event, tp.Finished):
            self._finished(event.summary)
        elif isinstance(event, tp.TrainError):
            self._ended("failed", event.message)
        elif isinstance(event, tp.WorkerExited):
            checkpoint = self.training.last.get("checkpoint")
            self._ended("interrupted", event.message.split(" The run can be resumed")[0]
                        + " Resume continues from the last checkpoint"
                        + (f" (step {checkpoint})." if checkpoint else "."))

    def _ended(self, status: str, message: str) -> None:
        run_id = self.shown_run or ""
        self.training.show_outcome(status, message)
        if self.bridge is not None:
            try:  # the worker exits right after its last event
                self.bridge.client.wait(5)
            except subprocess.TimeoutExpired:
                self.bridge.client.kill()
        self.history.busy_run = None
        self.history.refresh()
        self._restore_chat()
        self._update_plan()
        # A crash is offered for Resume at the next start; an outcome the person saw or
        # chose is not.
        self._remember_closed_run(run_id if status == "interrupted" else None)
        self.run_ended.emit(run_id, status)

    def _finished(self, summary: dict[str, Any]) -> None:
        try:
            self.tuned_model = (model_of_run(self.library, summary["run_id"])
                                or (register_result(self.library, self.home, summary)
                                    if summary.get("gguf_path") else None))
        except (LibraryError, OSError, KeyError) as exc:
            self.training.log(f"The model could not be added to the library: {exc}")
            self.tuned_model = None
        self.training.show_summary(summary, self.tuned_model)
        self.refresh_models()  # the tuned model can be the base of the next run
        name = self.tuned_model.name if self.tuned_model else "the adapter"
        self._ended("finished", f"Done: {name} is ready.")
        if self.tuned_model is None:
            self.training.chat_button.hide()
            self.training.compare_button.hide()

    # -------------------------------------------------------------- actions

    def _on_cancel_clicked(self) -> None:
        if self.bridge is not None and self.bridge.alive:
            self.bridge.cancel()
            self.training.cancel_button.setEnabled(False)
            self.training.status_label.setText("Stopping after this step and saving a checkpoint…")

    def cancel(self) -> None:
        self._on_cancel_clicked()

    def _on_resume_clicked(self) -> None:
        if self.shown_run:
            self.resume(self.shown_run)

    def resume(self, run_id: str) -> bool:
        """Continue a cancelled or interrupted run from its last checkpoint."""
        if self.is_training():
            return False
        try:
            run_dir(self.home, run_id)
        except RunError as exc:
            warn(self, "Cannot resume", str(exc))
            return False
        self._attach(run_id, resuming=True)
        return True

    def _on_banner_resume(self) -> None:
        if self.banner_run:
            self.resume(self.banner_run)

    def _on_banner_dismiss(self) -> None:
        self.resume_banner.hide()
        self._remember_closed_run(None)

    def _remember_closed_run(self, run_id: str | None) -> None:
        """Closing the window stops a run with a checkpoint ("cancelled"), and a worker
        that dies before it records its state leaves the run looking cancelled too;
        remember such a run so the next start offers Resume."""
        ui = self.workspace.settings.ui
        if ui.get(CLOSED_RUN_KEY) == run_id:
            return
        if run_id is None:
            ui.pop(CLOSED_RUN_KEY, None)
        else:
            ui[CLOSED_RUN_KEY] = run_id
        with contextlib.suppress(OSError):  # only the offer is lost; the run itself is safe
            self.workspace.save_settings()

    def _offer_resume(self) -> None:
        """After a restart: offer the newest run that stopped before it finished."""
        closed = self.workspace.settings.ui.get(CLOSED_RUN_KEY)
        stopped = [r for r in list_runs(self.home) if r.status == "interrupted"
                   or (r.run_id == closed and r.status in RESUMABLE)]
        if not stopped:
            self._remember_closed_run(None)
            return
        run = stopped[-1]
        self.banner_run = run.run_id
        total = f" of {run.total_steps}" if run.total_steps else ""
        how = ("was stopped when Hearth closed" if run.status == "cancelled"
               else "was interrupted")
        self.resume_label.setText(
            f"<b>A fine-tuning run {how}</b> at step {run.step}{total}: "
            f"{esc(run.base_model)} → {esc(run.out_name)}, on {esc(run.dataset)}. Resume "
            "continues from its last checkpoint.")
        self.resume_banner.show()

    def _on_chat_clicked(self) -> None:
        if self.tuned_model is not None:
            self.chat_requested.emit(self.tuned_model.name)

    def _on_compare_clicked(self) -> None:
        if self.shown_run:
            self.open_compare(self.shown_run)

    def _on_page_changed(self, index: int) -> None:
        if index == PAGE_HISTORY:
            self.history.refresh()  # runs started from the CLI meanwhile appear too

    def _on_new_run_clicked(self) -> None:
        self.pages.setCurrentIndex(PAGE_SETUP)

    def _on_open_run(self, run_id: str) -> None:
        if self.is_training() and self.bridge is not None and run_id != self.bridge.run_id:
            QMessageBox.information(self, "A run is training",
                                    "Open other runs when this one has ended.")
            return
        if self.is_training():
            self.pages.setCurrentIndex(PAGE_TRAINING)
            return
        self.open_run(run_id)

    def open_run(self, run_id: str) -> None:
        """Show a past run: its chart, log and (when finished) summary."""
        self._show_run(run_id)
        files = run_files(self.home, self.library, run_id)
        status = next((r.status for r in list_runs(self.home) if r.run_id == run_id), "")
        view = self.training
        if files.summary and status == "finished":
            self.tuned_model = files.model
            view.show_summary(files.summary, files.model)
            view.show_outcome("finished", "Finished.")
            view.compare_button.setEnabled(files.gguf.exists())
            view.chat_button.setEnabled(files.model is not None)
        elif status in RESUMABLE:
            view.show_outcome(status, f"This run is {status}; Resume continues from its last "
                                      "checkpoint.")
        else:
            view.set_buttons(view.new_run_button)
            view.status_label.setText(f"This run is {status or 'unknown'}.")

    def _on_resume_run(self, run_id: str) -> None:
        self.resume(run_id)

    def _on_compare_run(self, run_id: str) -> None:
        self.open_compare(run_id)

    def _on_run_deleted(self, run_id: str) -> None:
        if self.shown_run == run_id:
            self.shown_run = None
            self.pages.setTabEnabled(PAGE_TRAINING, False)
        if self.banner_run == run_id:
            self.resume_banner.hide()
        self.refresh_models()

    def open_compare(self, run_id: str) -> CompareView | None:
        """Open the base and tuned models side by side, primed with validation prompts."""
        files = run_files(self.home, self.library, run_id)
        if not files.gguf.exists():
            return None
        base_path = Path(files.spec["base"]["path"])
        tuned_name = files.model.name if files.model else files.spec["out_name"]
        if self.compare_dialog is not None:
            self.compare_dialog.close()
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Compare {files.spec['base']['name']} and {tuned_name}")
        dialog.resize(1000, 640)
        view = CompareView((f"Base: {files.spec['base']['name']}", base_path),
                           (f"Tuned: {tuned_name}", files.gguf),
                           self.workspace.settings.load, log_dir=self.home.logs,
                           home=self.home)
        box = QVBoxLayout(dialog)
        box.addWidget(view)
        view.prompts_edit.setPlainText("\n".join(_sample_prompts(files.folder)))
        dialog.finished.connect(view.shutdown)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.destroyed.connect(self._on_compare_closed)
        self.compare_dialog = dialog
        self.compare_view = view
        dialog.show()
        return view

    def _on_compare_closed(self, *_args: object) -> None:
        self.compare_dialog = None

    def shutdown(self) -> None:
        """Stop training (with a checkpoint) and any compare workers; for window close.
        A run stopped here is offered for Resume at the next start."""
        if self.bridge is not None and self.bridge.alive:
            self._remember_closed_run(self.bridge.run_id)
            self.bridge.shutdown(timeout=10)
        if self.compare_dialog is not None:
            self.compare_view.shutdown()
            self.compare_dialog.close()
        if self._check_thread is not None:
            self._check_thread.join(10)
        self._layouts.shutdown()  # each render is bounded, so this ends


def _sample_prompts(folder: Path, n: int = 3) -> list[str]:
    """The first user messages of the held-out records: good prompts to compare on."""
    prompts: list[str] = []
    for name in ("val.jsonl", "train.jsonl"):
        path = folder / "data" / name
        if not path.exists():
            continue
        for line in path.read_text("utf-8").splitlines():
            try:
                messages = json.loads(line).get("messages") or []
            except ValueError:
                continue
            user = [m["content"] for m in messages if m.get("role") == "user"]
            if user and user[-1] not in prompts:
                prompts.append(user[-1].replace("\n", " "))
            if len(prompts) >= n:
                return prompts
    return prompts
