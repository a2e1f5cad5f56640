"""The Advanced panel is built from the settings' own data: every field's label and
tooltip, and spin box ranges that are the bounds the engine checks (no source read, so a
frozen build shows the same)."""

from __future__ import annotations

import dataclasses

import pytest
from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox

from app.errors import HearthError
from app.finetune.settings import ExportSettings, LoraSettings, SettingsError, knobs
from ui.finetune.settings_form import SettingsForm


def test_every_field_is_shown_with_its_help_and_the_engines_range(qtbot) -> None:
    form = SettingsForm()
    qtbot.addWidget(form)
    for cls in (LoraSettings, ExportSettings):
        described = knobs(cls)
        assert list(described) == [f.name for f in dataclasses.fields(cls)]
        for name, knob in described.items():
            assert knob.help and form.widgets[name].toolTip() == knob.help, name
    for name, knob in {**knobs(LoraSettings), **knobs(ExportSettings)}.items():
        spin = form.widgets[name]
        if not isinstance(spin, QSpinBox | QDoubleSpinBox):
            continue
        lowest = None if name == "max_steps" else spin.minimum()  # 0 there means None
        for value in (lowest, spin.maximum()):  # the form's ends are values it accepts
            if value is not None:
                form.set_values(LoraSettings(), ExportSettings())
                spin.setValue(value)
                form.lora(), form.export()
        if knob.high is not None:  # one step past the end is the engine's to refuse
            cls = LoraSettings if name in knobs(LoraSettings) else ExportSettings
            with pytest.raises(SettingsError, match="must be"):
                cls(**{name: knob.high + (1 if isinstance(spin, QSpinBox) else 0.5)})


def test_a_bad_setting_is_the_persons_error_named_with_its_range() -> None:
    with pytest.raises(SettingsError) as refused:
        LoraSettings(rank=2048)
    assert isinstance(refused.value, HearthError)
    assert str(refused.value) == "LoRA rank must be between 1 and 1,024"
    with pytest.raises(SettingsError, match=r"learning rate must be above 0 and below 1"):
        LoraSettings(learning_rate=1.0)
    with pytest.raises(SettingsError, match="top-1 agreement"):
        ExportSettings(min_top1_agreement=1.5)
