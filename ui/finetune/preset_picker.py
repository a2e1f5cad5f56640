"""The Set up page's "How hard to train": the presets, what each costs, and the details.

A preset is one click for a person who does not know what a LoRA rank is, and its label
says what it would cost on this data (time and peak memory), so the choice is made with
the figures in view. Under them: the estimate of the run as set, the advice when the data
asks for another preset (:class:`~ui.finetune.advice_banner.AdviceBanner`), and the
advanced settings, folded away. The page works out the plans, since it knows the model
and the data; this widget keeps the settings and shows the figures.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QButtonGroup, QLabel, QRadioButton, QToolButton, QVBoxLayout, QWidget

from app.finetune.advice import Advice
from app.finetune.estimate import Estimate
from app.finetune.plan import RunPlan
from app.finetune.settings import PRESETS, LoraSettings, preset, preset_label
from app.machine.profile import Machine
from app.units import format_bytes, format_duration
from ui import theme
from ui.finetune.advice_banner import AdviceBanner
from ui.finetune.settings_form import SettingsForm


class PresetPicker(QWidget):
    changed = Signal()  # the settings changed: a preset was chosen or a field edited

    def __init__(self, machine: Machine, records: Callable[[], int],
                 memory_available: Callable[[], int], parent: QWidget | None = None) -> None:
        """``records``: how many records the chosen data has (a preset's epochs follow
        it); ``memory_available``: free memory now, told beside the estimate."""
        super().__init__(parent)
        self.machine = machine
        self.records = records
        self.memory_available = memory_available
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        buttons = QVBoxLayout()
        buttons.setSpacing(2)
        self.preset_group = QButtonGroup(self)
        self.preset_buttons: dict[str, QRadioButton] = {}
        for name in PRESETS:
            button = QRadioButton(preset_label(name))
            self.preset_group.addButton(button)
            self.preset_buttons[name] = button
            buttons.addWidget(button)
            button.toggled.connect(self._on_preset_toggled)
        layout.addLayout(buttons)
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        layout.addWidget(self.estimate_label)
        self.advice = AdviceBanner()  # "this will not learn new facts", and the fix
        self.advice.use_preset.connect(self.select_preset)
        layout.addWidget(self.advice)
        self.advanced_toggle = QToolButton()
        self.advanced_toggle.setText("Advanced settings")
        self.advanced_toggle.setCheckable(True)
        self.advanced_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.advanced_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.advanced_toggle.setStyleSheet("QToolButton { border: none }")
        self.advanced_toggle.toggled.connect(self._on_advanced_toggled)
        layout.addWidget(self.advanced_toggle)
        self.settings_form = SettingsForm()
        self.settings_form.changed.connect(self.changed)
        self.settings_form.hide()
        layout.addWidget(self.settings_form)

    def selected_preset(self) -> str:
        return next(n for n, b in self.preset_buttons.items() if b.isChecked())

    def select_preset(self, name: str) -> None:
        self.preset_buttons[name].setChecked(True)

    def refit(self) -> None:
        """The data changed: choose the preset's epochs again for its size, quietly (the
        page works out its plan once the data is laid out)."""
        self.settings_form.blockSignals(True)
        self._apply_preset()
        self.settings_form.blockSignals(False)

    # ------------------------------------------------------------- figures

    def clear(self) -> None:
        """No data or no model: no figures to show."""
        self.estimate_label.setText("")
        self.advice.show_advice(None)
        for name, button in self.preset_buttons.items():
            button.setText(preset_label(name))

    def say(self, text: str) -> None:
        """A line in place of the estimate, while it is worked out."""
        self.estimate_label.setText(text)

    def show_costs(self, guesses: Mapping[str, Estimate]) -> None:
        """What each preset would cost on this data."""
        for name, guess in guesses.items():
            self.preset_buttons[name].setText(
                f"{preset_label(name)}: about {format_duration(guess.seconds)}, "
                f"peak memory about {format_bytes(guess.peak_memory_bytes)}")

    def show_plan(self, plan: RunPlan, settings: LoraSettings, advice: Advice | None) -> None:
        """The run as set, and the advice on it."""
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
        self.advice.show_advice(advice)

    # ------------------------------------------------------------ internals

    def _on_preset_toggled(self, checked: bool) -> None:
        if checked:
            self._apply_preset()

    def _apply_preset(self) -> None:
        export = self.settings_form.export()
        self.settings_form.set_values(preset(self.selected_preset(), self.records(),
                                             self.machine), export)

    def _on_advanced_toggled(self, shown: bool) -> None:
        self.settings_form.setVisible(shown)
        self.advanced_toggle.setArrowType(Qt.ArrowType.DownArrow if shown
                                          else Qt.ArrowType.RightArrow)
