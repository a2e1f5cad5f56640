"""Scrolling a settings panel with the mouse wheel scrolls the panel: the spin box or
combo box under the pointer keeps its value unless the person clicked into it first
(seen in the window: Context went from 4096 to 256 while scrolling the chat settings)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from app.workspace import Workspace
from ui.chat.chat_view_model import ChatViewModel
from ui.chat.inference_bridge import InferenceBridge
from ui.chat.settings_panel import SettingsPanel
from ui.wheel_guard import is_guarded_kind


@pytest.fixture
def panel(qtbot: QtBot, workspace: Workspace) -> Iterator[SettingsPanel]:
    chat = ChatViewModel(workspace, InferenceBridge())
    widget = SettingsPanel(chat)
    widget.resize(300, 400)  # shorter than its page: it scrolls
    qtbot.addWidget(widget)
    widget.show()
    qtbot.waitExposed(widget)
    yield widget
    chat.shutdown()


def _wheel(widget: QWidget, notches: int = -3) -> QWheelEvent:
    """One wheel turn over the middle of ``widget`` (negative: scrolling down)."""
    centre = QPointF(widget.rect().center())
    event = QWheelEvent(centre, QPointF(widget.mapToGlobal(QPoint(0, 0))) + centre,
                        QPoint(0, 0), QPoint(0, 120 * notches), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)
    return event


def test_the_wheel_over_an_unfocused_box_leaves_its_value(qtbot: QtBot,
                                                          panel: SettingsPanel) -> None:
    panel.n_ctx.setValue(4096)
    panel.template.setCurrentIndex(0)
    panel.reset_sampling.setFocus()
    for box, value in ((panel.n_ctx, panel.n_ctx.value),
                       (panel.template, panel.template.currentIndex),
                       (panel.temperature, panel.temperature.value)):
        before = value()
        event = _wheel(box)
        assert value() == before, box.objectName() or type(box).__name__
        assert not event.isAccepted()  # so Qt hands it on to the panel, which scrolls
        assert not box.hasFocus()


def test_a_box_the_person_clicked_still_steps_on_the_wheel(qtbot: QtBot,
                                                           panel: SettingsPanel) -> None:
    panel.n_ctx.setValue(4096)
    panel.n_ctx.setFocus(Qt.FocusReason.MouseFocusReason)
    qtbot.waitUntil(panel.n_ctx.hasFocus)
    _wheel(panel.n_ctx, notches=1)
    assert panel.n_ctx.value() == 4096 + panel.n_ctx.singleStep()


def test_every_value_widget_in_the_scrolling_panels_is_guarded(
        panel: SettingsPanel) -> None:
    boxes = [w for w in panel.findChildren(QWidget) if is_guarded_kind(w)]
    assert len(boxes) >= 12  # sampling, loading, structured output
    assert all(b.focusPolicy() == Qt.FocusPolicy.StrongFocus for b in boxes)


def test_the_fine_tune_form_is_guarded_too(qtbot: QtBot, workspace: Workspace) -> None:
    from app.chat.corrections import CorrectionStore
    from ui.finetune.finetune_tab import FineTuneTab

    tab = FineTuneTab(workspace, CorrectionStore(workspace.library.conn),
                      memory_available=lambda: 1 << 40)
    qtbot.addWidget(tab)
    try:
        setup = tab.setup
        boxes = [w for w in setup.findChildren(QWidget) if is_guarded_kind(w)]
        assert setup.model_combo in boxes and len(boxes) >= 10
        assert all(b.focusPolicy() == Qt.FocusPolicy.StrongFocus for b in boxes)
        steps = setup.settings_form.widgets["max_steps"]
        before = steps.value()
        assert not _wheel(steps).isAccepted() and steps.value() == before
    finally:
        tab.shutdown()
