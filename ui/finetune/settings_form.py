"""The Advanced panel: every field of LoraSettings and ExportSettings, as a form.

Built from the dataclasses themselves, so a field the engine adds shows up here without
a GUI change; each field's docstring becomes its tooltip and its help line.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
from functools import cache
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

from app.finetune.settings import QUANT_TYPES, ExportSettings, LoraSettings

# Ranges and steps of the numeric fields; __post_init__ still has the last word.
INT_RANGES = {"rank": (1, 1024), "max_steps": (0, 1_000_000), "batch_size": (1, 4096),
              "grad_accumulation": (1, 4096), "max_seq_len": (16, 131072),
              "seed": (0, 2**31 - 1), "eval_every": (0, 1_000_000),
              "checkpoint_every": (0, 1_000_000), "fidelity_samples": (1, 1000)}
FLOAT_SPECS = {  # (minimum, maximum, decimals, step)
    "alpha": (0.01, 4096, 2, 1), "dropout": (0, 0.99, 3, 0.01),
    "learning_rate": (1e-7, 0.99, 7, 1e-5), "warmup_ratio": (0, 0.99, 3, 0.01),
    "min_lr_ratio": (0, 1, 3, 0.05), "weight_decay": (0, 10, 4, 0.01),
    "layer_share": (0.05, 1, 2, 0.05),
    # The export gate (app/finetune/fidelity.py).
    "min_top1_agreement": (0, 1, 2, 0.05), "max_relative_logit_diff": (0, 1, 3, 0.01),
    "max_loss_gap": (0, 10, 2, 0.05),
    "epochs": (0.01, 1000, 2, 0.5), "validation_fraction": (0.01, 0.99, 3, 0.01),
    "max_grad_norm": (0, 1000, 2, 0.1)}
LABELS = {"grad_accumulation": "Gradient accumulation", "max_seq_len": "Max sequence length",
          "min_lr_ratio": "Final LR ratio", "max_grad_norm": "Gradient clip norm",
          "layer_share": "Share of layers (top)",
          "out_name": "Output model name", "quant": "Quantization",
          "gguf": "Export a GGUF model",
          "min_top1_agreement": "Export gate: top-1 agreement at least",
          "max_relative_logit_diff": "Export gate: logit difference at most",
          "max_loss_gap": "Export gate: quantized loss gap at most"}


@cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (PEP 257 attribute docstrings)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def _label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


class SettingsForm(QWidget):
    changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.widgets: dict[str, QWidget] = {}
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        for cls in (LoraSettings, ExportSettings):
            docs = field_docs(cls)
            heading = QLabel("LoRA training" if cls is LoraSettings else "Export")
            heading.setStyleSheet("font-weight: 600; margin-top: 6px")
            form.addRow(heading)
            for f in dataclasses.fields(cls):
                widget = self._make(f.name, f.default)
                widget.setToolTip(docs.get(f.name, ""))
                label = QLabel(_label(f.name))
                label.setToolTip(docs.get(f.name, ""))
                self.widgets[f.name] = widget
                form.addRow(label, widget)
        self.set_values(LoraSettings(), ExportSettings())

    def _make(self, name: str, default: Any) -> QWidget:
        if isinstance(default, bool):
            check = QCheckBox()
            check.toggled.connect(self.changed)
            return check
        if name == "quant":
            combo = QComboBox()
            combo.addItems(QUANT_TYPES)
            combo.currentIndexChanged.connect(self.changed)
            return combo
        if name in ("target_modules", "out_name"):
            edit = QLineEdit()
            edit.setPlaceholderText("all linear projections (comma-separated names to "
                                    "choose)" if name == "target_modules"
                                    else "derived from the base model and the run")
            edit.textChanged.connect(self.changed)
            return edit
        if name in INT_RANGES:
            spin = QSpinBox()
            spin.setRange(*INT_RANGES[name])
            if name in ("max_steps", "eval_every", "checkpoint_every"):
                spin.setSpecialValueText("by epochs" if name == "max_steps" else "auto")
            spin.valueChanged.connect(self.changed)
            return spin
        low, high, decimals, step = FLOAT_SPECS[name]
        dspin = QDoubleSpinBox()
        dspin.setRange(low, high)
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
        """The settings as typed; raises ValueError with the engine's message if invalid."""
        return LoraSettings(**self._values(LoraSettings))

    def export(self) -> ExportSettings:
        return ExportSettings(**self._values(ExportSettings))
