"""The Fine-tune tab's Set up page: model, data, how hard to train, and Start.

The data is checked (:func:`app.finetune.datasets.load_dataset`), the model's header
read and the records laid out by its template (:mod:`ui.finetune.data_layout`), all off
the GUI thread; the page shows the check, a preview of the first records as they will be
trained, and works out the plan of the run and of each preset, which the presets show
(:mod:`ui.finetune.preset_picker`, where the training settings live). It emits
:attr:`SetupPage.start_requested` when Start is clicked; the tab creates and runs the run
(:meth:`SetupPage.run_request`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.chat.corrections import CorrectionStore
from app.errors import HearthError
from app.finetune.advice import fact_advice
from app.finetune.datasets import Dataset, DatasetError
from app.finetune.plan import ModelFacts, RunPlan, plan_run
from app.finetune.recall import planned_seconds
from app.finetune.settings import (
    PRESETS,
    ExportSettings,
    LoraSettings,
    preset,
)
from app.machine.profile import Machine
from app.models.library import Library, ModelRecord
from app.paths import HearthHome, is_converted
from ui import theme
from ui.finetune.data_layout import (
    DataLayouts,
    Key,
    preview_html,
)
from ui.finetune.data_picker import DataPicker
from ui.finetune.preset_picker import PresetPicker
from ui.untrusted import PlainLabel, SafeTextBrowser
from ui.wheel_guard import guard_wheel


@dataclass
class RunRequest:
    """What Start asks for: a run of ``base`` on ``dataset``, as planned."""

    base: ModelRecord
    dataset: Dataset
    settings: LoraSettings
    export: ExportSettings
    plan: RunPlan


def heading(text: str) -> QLabel:
    label = QLabel(text)
    label.setStyleSheet("font-weight: 600; margin-top: 8px")
    return label


class SetupPage(QWidget):
    # Dataset or DatasetError, after each check; for a usable dataset, once its records
    # are laid out by the model's template too (preview and estimate shown).
    dataset_checked = Signal(object)
    start_requested = Signal()

    def __init__(self, home: HearthHome, library: Library, machine: Machine,
                 memory_available: Callable[[], int], is_training: Callable[[], bool],
                 corrections: CorrectionStore | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.library = library
        self.machine = machine
        self.is_training = is_training
        self.plan: RunPlan | None = None
        self._unannounced: Dataset | None = None  # checked, waiting for its layout
        self._start_when_checked = False
        self.layouts = DataLayouts(self)
        self.layouts.ready.connect(self._on_layout_ready)
        self.data = DataPicker(home, corrections)
        self.data.checking.connect(lambda: self.start_button.setEnabled(False))
        self.data.checked.connect(self._on_dataset_checked)
        self.data.cleared.connect(self._on_data_cleared)
        self.data.unchanged.connect(self._on_corrections_unchanged)
        # The data's widgets, by the names the page has always had.
        self.corrections_radio = self.data.corrections_radio
        self.validation_label = self.data.validation_label
        self.issues_view = self.data.issues_view
        self.presets = PresetPicker(
            machine, lambda: self.dataset.stats.records if self.dataset else 100,
            memory_available)
        self.presets.changed.connect(self.update_plan)
        self.preset_buttons = self.presets.preset_buttons  # and its widgets, the same way
        self.settings_form = self.presets.settings_form
        self.estimate_label = self.presets.estimate_label
        self.advice = self.presets.advice
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_form())
        splitter.addWidget(self._build_preview())
        splitter.setSizes([430, 620])
        outer.addWidget(splitter, 1)
        self.preset_buttons["balanced"].setChecked(True)
        self.refresh_models()

    @property
    def dataset(self) -> Dataset | None:
        return self.data.dataset

    # ================================================================ widgets

    def _build_form(self) -> QWidget:
        left = QWidget()
        form = QVBoxLayout(left)
        form.setContentsMargins(0, 0, 6, 0)
        form.addWidget(heading("1. Model"))
        self.model_combo = QComboBox()
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        form.addWidget(self.model_combo)
        form.addWidget(heading("2. Data"))
        form.addWidget(self.data)
        form.addWidget(heading("3. How hard to train"))
        form.addWidget(self.presets)
        form.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(left)
        guard_wheel(left)  # scrolling the form must not change the value under the pointer
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
        self.start_button: QPushButton = QPushButton("Start fine-tuning")
        self.start_button.setMinimumHeight(34)
        self.start_button.setStyleSheet("font-weight: 600; padding: 4px 18px")
        self.start_button.clicked.connect(self.start_requested)
        start_row.addWidget(self.start_error, 1)
        start_row.addWidget(self.start_button)
        column_layout.addLayout(start_row)
        return column

    def _build_preview(self) -> QWidget:
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(6, 0, 0, 0)
        right_layout.addWidget(heading("Preview: the first records as the model will see "
                                       "them"))
        legend = QLabel(f'<span style="background-color:{theme.HIGHLIGHT_BACKGROUND}; color:'
                        f'{theme.HIGHLIGHT_TEXT}">&nbsp;highlighted&nbsp;</span> text is what '
                        "the model learns to write (it carries the loss); the rest is "
                        "context, laid out by the model's own chat template.")
        legend.setWordWrap(True)
        right_layout.addWidget(legend)
        self.preview_view = SafeTextBrowser()
        self.preview_view.setPlaceholderText("Choose some data to see how it will be trained.")
        right_layout.addWidget(self.preview_view, 1)
        return right

    # ================================================================ the model

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
        """The facts when known; None while they are read (or when they cannot be)."""
        facts = self.layouts.facts(record)
        if isinstance(facts, Exception):
            self.start_error.setText(f"{record.name} cannot be read: {facts}")
            return None
        return facts

    def _on_model_changed(self, *_args: object) -> None:
        self._update_preview()
        self.update_plan()

    def load_file(self, path: Path) -> None:
        """Use ``path`` as the data (what Choose… and a drop do)."""
        self.data.load_file(path)

    def refresh_corrections(self, count: int | None = None) -> None:
        """Connect to DatasetsView.changed: updates the count and, when the corrections
        are the chosen data, checks them again."""
        self.data.refresh_corrections(count)

    def _on_data_cleared(self) -> None:
        self.preview_view.clear()
        self.update_plan()

    def _on_dataset_checked(self, result: Dataset | DatasetError) -> None:
        if isinstance(result, DatasetError):
            self._start_when_checked = False
            self.preview_view.clear()
            self.update_plan()
            self.dataset_checked.emit(result)
            return
        self.presets.refit()  # the preset's epochs follow the dataset's size
        self._unannounced = result
        self._update_preview()
        self.update_plan()
        self._announce()

    def _on_corrections_unchanged(self) -> None:
        self.start_button.setEnabled(not self.is_training())
        if self._start_when_checked:
            self._start_when_checked = False
            self.start_requested.emit()

    def _announce(self) -> None:
        """Say the dataset is checked once nothing about it is still being worked out."""
        if self._unannounced is None or self.layouts.busy:
            return
        announced, self._unannounced = self._unannounced, None
        if announced is not self.dataset:
            return
        self.dataset_checked.emit(announced)
        if self._start_when_checked:
            self._start_when_checked = False
            self.start_requested.emit()

    def _on_layout_ready(self) -> None:
        self._update_preview()
        self.update_plan()
        self._announce()

    # ================================================== preview and estimate

    def _layout_key(self) -> Key | None:
        record = self.current_model()
        if self.dataset is None or record is None:
            return None
        return (record.name, self.dataset.sha256)

    def _update_preview(self) -> None:
        record, key = self.current_model(), self._layout_key()
        if key is None or record is None or self.dataset is None:
            return
        facts = self._facts_for(record)
        if facts is None:
            return
        layout = self.layouts.layout(key, self.dataset, facts)
        if layout is None:
            self.preview_view.setPlainText("Laying out the records with the model's chat "
                                           "template…")
            return
        records = layout[0]
        if isinstance(records, HearthError):
            self.preview_view.setPlainText(f"The model's chat template cannot lay out this "
                                           f"data: {records}")
            return
        self.preview_view.setHtml(preview_html(records))

    def selected_preset(self) -> str:
        return self.presets.selected_preset()

    def select_preset(self, name: str) -> None:
        self.presets.select_preset(name)

    def _cannot_start(self, reason: str) -> None:
        self.start_error.setText(reason)
        self.start_button.setEnabled(False)

    def update_plan(self) -> None:
        """The estimate of the chosen run and of each preset; Start when all is known."""
        self.plan = None
        record = self.current_model()
        if self.dataset is None or record is None:
            self.presets.clear()
            self._cannot_start("" if record else "No model in the library yet: add one in "
                               "the Models tab.")
            return
        try:
            settings = self.settings_form.lora()
            export = self.settings_form.export()
        except HearthError as exc:
            return self._cannot_start(str(exc).capitalize())
        facts = self._facts_for(record)
        if facts is None:
            self.start_button.setEnabled(False)
            return
        if facts.refusal:
            return self._cannot_start(facts.refusal)
        layout = self.layouts.layout((record.name, self.dataset.sha256), self.dataset, facts)
        if layout is None:
            self.presets.say("Measuring the records with the model's chat template…")
            self.start_button.setEnabled(False)
            return
        try:
            shape = layout[1]
            if isinstance(shape, HearthError):
                raise shape
            converted = is_converted(record.path, self.home.base_model_cache)
            recall_s = planned_seconds(self.home, record.path, facts.parameters,
                                       self.machine, self.dataset)
            self.plan = plan_run(facts, self.dataset, settings, self.machine, shape, export,
                                 converted, recall_s)
            self.presets.show_costs({
                name: plan_run(facts, self.dataset,
                               preset(name, self.dataset.stats.records, self.machine),
                               self.machine, shape, export, converted, recall_s).estimate
                for name in PRESETS})
        except HearthError as exc:
            return self._cannot_start(str(exc).capitalize())
        self.presets.show_plan(self.plan, settings, fact_advice(self.dataset, settings))
        self.start_error.setText("")
        self.start_button.setEnabled(not self.is_training())

    # ================================================================ Start

    def run_request(self) -> RunRequest | None:
        """What Start should run, or None (the reason is shown on the page).

        Corrections added or edited since the data was checked are picked up: they are
        snapshot again (off the GUI thread), checked when they changed, and Start is
        requested once more when that is done."""
        record = self.current_model()
        if record is None or self.dataset is None or self.plan is None:
            return None
        if self.corrections_radio.isChecked() and self.data.corrections is not None:
            if not self.data.fresh:
                self._start_when_checked = True
                self.data.check_corrections(for_start=True)
                return None
            self.data.fresh = False
        try:
            settings = self.settings_form.lora()
            export = self.settings_form.export()
        except HearthError as exc:
            self.start_error.setText(str(exc).capitalize())
            return None
        return RunRequest(record, self.dataset, settings, export, self.plan)

    def shutdown(self) -> None:
        self.data.shutdown()
        self.layouts.shutdown()
