"""Esc (or Stop) says "Stopping…" at once, on the button and under the reply, while the
worker finishes the step it is in; then the room is back to Send (seen in the window:
2-6 s of no answer after Esc)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.inference import protocol as p
from app.workspace import Workspace
from ui.chat.chat_view_model import ModelState
from ui.main_window import MainWindow


@pytest.fixture
def window(qtbot: QtBot, workspace: Workspace) -> Iterator[MainWindow]:
    main = MainWindow(workspace)
    qtbot.addWidget(main)
    main.resize(1100, 700)
    main.show()
    qtbot.waitExposed(main)
    # No worker in this test: the client answers "r1" and records the Stop it is sent.
    main.cancelled = []  # type: ignore[attr-defined]
    main.chat.client.chat = lambda *a, **k: "r1"  # type: ignore[method-assign]
    main.chat.client.cancel = main.cancelled.append  # type: ignore[attr-defined,method-assign]
    main.chat.state = ModelState.READY
    main.chat.model_state_changed.emit()
    yield main
    main.close()


def test_escape_says_stopping_at_once_then_the_reply_ends(qtbot: QtBot,
                                                          window: MainWindow) -> None:
    composer, view = window.chat_page.composer, window.chat_page.view
    composer.editor.setFocus()
    qtbot.keyClicks(composer.editor, "Tell me a long story")
    qtbot.keyClick(composer.editor, Qt.Key.Key_Return)
    assert window.chat.busy and composer.button.text() == "Stop"
    with qtbot.waitSignal(window.chat.reply_chunk):
        window.chat._on_event(p.Tokens("r1", "Once upon a time", 4))
    qtbot.keyClick(composer.editor, Qt.Key.Key_Escape)
    # Said before the worker has answered anything.
    assert window.cancelled == ["r1"]  # type: ignore[attr-defined]
    assert composer.button.text() == "Stopping…" and not composer.button.isEnabled()
    assert view.stream_widget is not None
    assert view.stream_widget.footer.text() == "Stopping…"
    # Tokens already on their way do not take the words back.
    with qtbot.waitSignal(window.chat.reply_chunk):
        window.chat._on_event(p.Tokens("r1", " there", 1))
    assert view.stream_widget.footer.text() == "Stopping…"
    window.chat_page.grab().save("/tmp/stopping.png")
    stats = p.ReplyStats(5, 0, 5, 0.1, 10.0, 10.0, 0.3, "cancelled")
    with qtbot.waitSignal(window.chat.reply_finished):
        window.chat._on_event(p.Done("r1", "Once upon a time there", stats))
    assert not window.chat.busy and not window.chat.stopping
    assert composer.button.text() == "Send"
    assert window.chat.messages()[-1].status == "cancelled"
