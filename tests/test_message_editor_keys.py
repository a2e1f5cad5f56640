"""The inline editor of a sent message answers the keys a person tries first: Enter
sends the edit, Shift+Enter starts a new line, Esc leaves it as it was (before, Enter
only broke the line and Esc went to the window's Stop, so the editor stayed open)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.workspace import Workspace
from tests.chat_widgets import shown_messages
from ui.chat.chat_view_model import ModelState
from ui.chat.message_widget import MessageWidget
from ui.main_window import MainWindow


@pytest.fixture
def window(qtbot: QtBot, workspace: Workspace) -> Iterator[MainWindow]:
    store = workspace.store
    cid = store.create(title="Capitals").id
    store.add_message(cid, "user", "Capital of France?")
    store.add_message(cid, "assistant", "Paris.")
    main = MainWindow(workspace)
    qtbot.addWidget(main)
    main.show()
    qtbot.waitExposed(main)
    main.chat.state = ModelState.READY  # no model in these tests: editing needs none until it sends
    main.chat.model_state_changed.emit()
    main.chat.open_conversation(cid)
    yield main
    main.close()


def _open_editor(qtbot: QtBot, window: MainWindow) -> MessageWidget:
    view = window.chat_page.view
    qtbot.waitUntil(lambda: len(shown_messages(view)) == 2, timeout=5000)
    user = shown_messages(view)[0]
    user.edit_button.click()
    assert user.editor is not None
    qtbot.waitUntil(user.editor.hasFocus, timeout=5000)
    return user


def test_enter_sends_the_edit_and_shift_enter_breaks_the_line(
        qtbot: QtBot, window: MainWindow) -> None:
    resent: list[tuple[int, str]] = []
    window.chat.edit_and_resend = lambda mid, text: resent.append((mid, text))  # type: ignore[method-assign]
    user = _open_editor(qtbot, window)
    editor = user.editor
    assert editor is not None
    editor.selectAll()
    qtbot.keyClicks(editor, "Capital of")
    qtbot.keyClick(editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(editor, "Italy?")
    assert editor.toPlainText() == "Capital of\nItaly?" and user.editor is editor
    with qtbot.waitSignal(user.edit_submitted) as sent:
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert sent.args[1] == "Capital of\nItaly?"
    assert resent == [(user.message.id, "Capital of\nItaly?")] and user.editor is None


def test_escape_cancels_the_edit_and_does_not_stop_anything(
        qtbot: QtBot, window: MainWindow) -> None:
    stops: list[bool] = []
    window.chat.stop = lambda: stops.append(True)  # type: ignore[method-assign]
    user = _open_editor(qtbot, window)
    editor = user.editor
    assert editor is not None
    qtbot.keyClicks(editor, " and Spain?")
    sent: list[object] = []
    user.edit_submitted.connect(lambda *a: sent.append(a))
    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    assert user.editor is None and user.body_box.isVisible()
    assert not sent and not stops
    assert window.chat.messages()[0].content == "Capital of France?"
