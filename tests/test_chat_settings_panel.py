"""The chat settings panel as a person types into it (issue 15's walkthrough)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox
from pytestqt.qtbot import QtBot

from app.workspace import Workspace
from ui.chat.chat_view_model import ChatViewModel
from ui.chat.inference_bridge import InferenceBridge
from ui.chat.settings_panel import SettingsPanel


@pytest.fixture
def panel(qtbot: QtBot, workspace: Workspace) -> Iterator[SettingsPanel]:
    chat = ChatViewModel(workspace, InferenceBridge())
    widget = SettingsPanel(chat)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    chat.shutdown()


def _type_over(qtbot: QtBot, box: QDoubleSpinBox, text: str) -> None:
    """Select what the box shows and type ``text`` key by key, then press Enter."""
    box.setFocus()
    box.lineEdit().selectAll()
    qtbot.keyClicks(box.lineEdit(), text)
    qtbot.keyClick(box.lineEdit(), Qt.Key.Key_Return)


@pytest.mark.parametrize(("field", "start", "typed", "stored"), [
    ("temperature", 0.70, "1.3", 1.3),
    ("temperature", 0.70, "0.45", 0.45),
    ("top_p", 0.95, "0.45", 0.45),
    ("min_p", 0.05, "0.12", 0.12),
    ("repeat_penalty", 1.10, "1.25", 1.25),
])
def test_typing_a_decimal_stores_what_was_typed(
        qtbot: QtBot, panel: SettingsPanel, field: str, start: float, typed: str,
        stored: float) -> None:
    """Typing 1.3 over 0.70 stored 1.00 (and 0.45 stored 0.00): each keystroke re-set
    every box. The value typed is the value kept, and the box still shows it."""
    box: QDoubleSpinBox = getattr(panel, field)
    box.setValue(start)
    _type_over(qtbot, box, typed)
    assert getattr(panel.chat.sampling, field) == pytest.approx(stored)
    assert box.value() == pytest.approx(stored)


def test_arrow_steps_still_store_at_once(qtbot: QtBot, panel: SettingsPanel) -> None:
    """Stepping with the arrows is a finished edit: it is stored without Enter."""
    panel.temperature.setValue(0.70)
    panel.temperature.setFocus()
    qtbot.keyClick(panel.temperature, Qt.Key.Key_Up)
    assert panel.chat.sampling.temperature == pytest.approx(0.75)
