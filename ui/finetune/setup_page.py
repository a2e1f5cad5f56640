"""The Fine-tune tab's Set up page: model, data, how hard to train, and Start.

The data is checked (:func:`app.finetune.datasets.load_dataset`), the model's header
read and the records laid out by its template (:mod:`ui.finetune.data_layout`), all off
the GUI thread; the page shows the check, a preview of the first records as they will be
trained, and an estimate per preset. It emits :attr:`SetupPage.start_requested` when
Start is clicked; the tab creates and runs the run (:meth:`SetupPage.run_request`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QRadioButton,
    QScrollArea,
    QSplitter,
    QToolButton,
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
    preset_label,
)
from app.machine.profile import Machine
from app.models.library import Library, ModelRecord
from app.paths import HearthHome, is_converted
from app.units import format_bytes, format_duration
from ui import theme
from ui.finetune.advice_banner import AdviceBanner
from ui.finetune.data_layout import (
    DataLayouts,
    Key,
    preview_html,
)
from ui.finetune.data_picker import DataPicker
from ui.finetune.settings_form import SettingsForm
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
        self.memory_available = memory_available
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
        self._build_presets(form)
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
        self.start_button = QPushButton("Start fine-tuning")
        self.start_button.setMinimumHeight(34)
        self.start_button.setStyleSheet("font-weight: 600; padding: 4px 18px")
        self.start_button.clicked.connect(self.start_requested)
        start_row.addWidget(self.start_error, 1)
        start_row.addWidget(self.start_button)
        column_layout.addLayout(start_row)
        return column

    def _build_presets(self, form: QVBoxLayout) -> None:
        preset_row = QVBoxLayout()
        preset_row.setSpacing(2)
        self.preset_group = QButtonGroup(self)
        self.preset_buttons: dict[str, QRadioButton] = {}
        for name in PRESETS:
            button = QRadioButton(preset_label(name))
            self.preset_group.addButton(button)
            self.preset_buttons[name] = button
            preset_row.addWidget(button)
            button.toggled.connect(self._on_preset_toggled)
        form.addLayout(preset_row)
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        form.addWidget(self.estimate_label)
        self.advice = AdviceBanner()  # "this will not learn new facts", and the fix
        self.advice.use_preset.connect(self.select_preset)
        form.addWidget(self.advice)
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced settings")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setStyleSheet("QToolButton { border: none }")
        self.advanced_toggle.toggled.connect(self._on_advanced_toggled)
        form.addWidget(self.advanced_toggle)
        self.settings_form = SettingsForm()
        self.settings_form.changed.connect(self.update_plan)
        self.settings_form.hide()
        form.addWidget(self.settings_form)

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
        # The preset's epochs follow the dataset's size, so choose them again.
        self.settings_form.blockSignals(True)
        self._apply_preset()
        self.settings_form.blockSignals(False)
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

    def _on_advanced_toggled(self, shown: bool) -> None:
        self.settings_form.setVisible(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown
                                          else Qt.ArrowType.RightArrow)

    def _cannot_start(self, reason: str) -> None:
        self.start_error.setText(reason)
        self.start_button.setEnabled(False)

    def update_plan(self) -> None:
        """The estimate of the chosen run and of each preset; Start when all is known."""
        self.plan = None
        record = self.current_model()
        if self.dataset is None or record is None:
            self.estimate_label.setText("")
            self.advice.show_advice(None)
            for name, button in self.preset_buttons.items():
                button.setText(preset_label(name))
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
            self.estimate_label.setText("Measuring the records with the model's chat "
                                        "template…")
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
            for name, button in self.preset_buttons.items():
                guess = plan_run(facts, self.dataset,
                                 preset(name, self.dataset.stats.records, self.machine),
                                 self.machine, shape, export, converted, recall_s).estimate
                button.setText(f"{preset_label(name)}: about {format_duration(guess.seconds)}, "
                               f"peak memory about {format_bytes(guess.peak_memory_bytes)}")
        except HearthError as exc:
            return self._cannot_start(str(exc).capitalize())
        self._show_estimate(self.plan, settings)
        self.advice.show_advice(fact_advice(self.dataset, settings))

    def _show_estimate(self, plan: RunPlan, settings: LoraSettings) -> None:
        est = plan.estimate
        avail = self.memory_available()
        memory_note = ""
        if est.peak_memory_bytes > avail:
            memory_note = (f' <span style="color:{theme.readable(theme.ERROR)}">(only '
                           f"{format_bytes(avail)} free now)</span>")
        self.estimate_label.setText(
            f"This run: about <b>{format_duration(est.seconds)}</b> on this "
            f"{'GPU' if self.machine.has_gpu else 'CPU'}, peak memory about "
            f"<b>{format_bytes(est.peak_memory_bytes)}</b>{memory_note}.<br>"
            f"{plan.total_steps} steps over {plan.train_records} training records "
            f"({plan.val_records} held out for validation); rank {settings.rank}, "
            f"learning rate {settings.learning_rate:g}.")
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
