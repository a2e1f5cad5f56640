"""The Advanced panel: every field of LoraSettings and ExportSettings, as a form.

Built from the dataclasses themselves, so a field the engine adds shows up here without
a GUI change: each field's :class:`app.finetune.settings.Knob` gives its label, its
tooltip and its range (the same bounds ``__post_init__`` checks); only how a number is
stepped and shown is chosen here.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from app.finetune.settings import QUANT_TYPES, ExportSettings, Knob, LoraSettings, knobs

FLOAT_STEPS = {  # (decimals, step) of the fractional fields
    "alpha": (2, 1), "dropout": (3, 0.01), "learning_rate": (7, 1e-5),
    "warmup_ratio": (3, 0.01), "min_lr_ratio": (3, 0.05), "weight_decay": (4, 0.01),
    "layer_share": (2, 0.05), "epochs": (2, 0.5), "validation_fraction": (3, 0.01),
    "max_grad_norm": (2, 0.1), "min_top1_agreement": (2, 0.05),
    "max_relative_logit_diff": (3, 0.01), "max_loss_gap": (2, 0.05)}
SPECIAL = {"max_steps": "by epochs", "eval_every": "auto", "checkpoint_every": "auto"}
"""What the spin box shows at its lowest value (max steps: none, by epochs)."""
PLACEHOLDERS = {"target_modules": "all linear projections (comma-separated names to choose)",
                "out_name": "derived from the base model and the run"}


def int_range(name: str, knob: Knob) -> tuple[int, int]:
    """The spin box's range: the setting's own, and one below it for max steps (None)."""
    low = int(knob.low or 0) + (1 if knob.above else 0)
    high = int(knob.high if knob.high is not None else 2**31 - 1) - (1 if knob.below else 0)
    return (low - 1 if name == "max_steps" else low), high


def float_range(knob: Knob, decimals: int) -> tuple[float, float]:
    """The spin box's range: the setting's own, an open bound a least step inside."""
    least = 10.0 ** -decimals
    low = (knob.low or 0.0) + (least if knob.above else 0.0)
    high = (knob.high if knob.high is not None else 1e9) - (least if knob.below else 0.0)
    return low, high


class SettingsForm(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.widgets: dict[str, QWidget] = {}
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        for cls in (LoraSettings, ExportSettings):
            heading = QLabel("LoRA training" if cls is LoraSettings else "Export")
            heading.setStyleSheet("font-weight: 600; margin-top: 6px")
            form.addRow(heading)
            types = typing.get_type_hints(cls)
            for name, knob in knobs(cls).items():
                widget = self._make(name, knob, types[name])
                widget.setToolTip(knob.help)
                label = QLabel(knob.label)
                label.setToolTip(knob.help)
                self.widgets[name] = widget
                form.addRow(label, widget)
        self.set_values(LoraSettings(), ExportSettings())

    def _make(self, name: str, knob: Knob, kind: Any) -> QWidget:
        if kind is bool:
            check = QCheckBox()
            check.toggled.connect(self.changed)
            return check
        if name == "quant":
            combo = QComboBox()
            combo.addItems(QUANT_TYPES)
            combo.currentIndexChanged.connect(self.changed)
            return combo
        if name in PLACEHOLDERS:
            edit = QLineEdit()
            edit.setPlaceholderText(PLACEHOLDERS[name])
            edit.textChanged.connect(self.changed)
            return edit
        if kind is int or kind == int | None:
            spin = QSpinBox()
            spin.setRange(*int_range(name, knob))
            if name in SPECIAL:
                spin.setSpecialValueText(SPECIAL[name])
            spin.valueChanged.connect(self.changed)
            return spin
        decimals, step = FLOAT_STEPS[name]
        dspin = QDoubleSpinBox()
        dspin.setRange(*float_range(knob, decimals))
        dspin.setDecimals(decimals)
        dspin.setSingleStep(step)
        dspin.valueChanged.connect(self.changed)
        return dspin

    def set_values(self, lora: LoraSettings, export: ExportSettings | None = None) -> None:
        values: dict[str, Any] = lora.to_json()
        if export is not None:
            values.update(dataclasses.asdict(export))
        self.blockSignals(True)
        try:
            for name, value in values.items():
                widget = self.widgets.get(name)
                if isinstance(widget, QCheckBox):
                    widget.setChecked(bool(value))
                elif isinstance(widget, QComboBox):
                    widget.setCurrentText(str(value))
                elif isinstance(widget, QLineEdit):
                    widget.setText(", ".join(value) if isinstance(value, list)
                                   else value or "")
                elif isinstance(widget, QSpinBox | QDoubleSpinBox):
                    widget.setValue(value or 0)
        finally:
            self.blockSignals(False)
        self.changed.emit()

    def _values(self, cls: type) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            widget = self.widgets[f.name]
            if isinstance(widget, QCheckBox):
                out[f.name] = widget.isChecked()
            elif isinstance(widget, QComboBox):
                out[f.name] = widget.currentText()
            elif isinstance(widget, QLineEdit):
                text = widget.text().strip()
                if f.name == "target_modules":
                    names = [n.strip() for n in text.split(",") if n.strip()]
                    out[f.name] = names or None
                else:
                    out[f.name] = text or None
            elif isinstance(widget, QSpinBox):
                value = widget.value()
                out[f.name] = (value or None) if f.name == "max_steps" else value
            elif isinstance(widget, QDoubleSpinBox):
                out[f.name] = widget.value()
        return out

    def lora(self) -> LoraSettings:
        """The settings as typed; raises SettingsError with the engine's message if
        invalid."""
        return LoraSettings(**self._values(LoraSettings))

    def export(self) -> ExportSettings:
        return ExportSettings(**self._values(ExportSettings))
