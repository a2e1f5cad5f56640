"""hearth.db held by another program in the middle of a session: the person reads what
happened and what to do, not SQLite's bare "database is locked", and the chat leaves
its "busy" state instead of waiting for ever on a reply that could not be stored."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.db import DatabaseBusy, connect
from app.inference import protocol as p
from app.workspace import Workspace
from ui.chat.chat_view_model import ChatViewModel, ModelState, ProblemAction
from ui.chat.conversation_view import ConversationView
from ui.chat.inference_bridge import InferenceBridge


def _hold(path: Path) -> sqlite3.Connection:
    """Another program's connection with the write lock held (a database browser)."""
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


def _short_wait(db) -> None:  # app.db.Database
    db._conn.execute("PRAGMA busy_timeout=50")  # the real wait is 10 s


def test_a_locked_database_mid_session_says_what_to_do(tmp_path: Path) -> None:
    db = connect(tmp_path / "hearth.db")
    _short_wait(db)
    other = _hold(tmp_path / "hearth.db")
    try:
        with pytest.raises(DatabaseBusy) as raised:
            db.execute("INSERT INTO conversations (title, created_at, updated_at) "
                       "VALUES ('t', 'x', 'x')")
        text = str(raised.value)
        assert "hearth.db is locked by another program" in text
        assert "Close other programs using it" in text and "try again" in text
        with pytest.raises(DatabaseBusy), db.transaction():
            pass
    finally:
        other.rollback()
        other.close()
    # Once the other program lets go, the same connection works (no transaction left open).
    with db.transaction():
        db.execute("INSERT INTO conversations (title, created_at, updated_at) "
                   "VALUES ('t', 'x', 'x')")
    assert db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0] == 1
    db.close()


@pytest.fixture
def chat(qtbot: QtBot, workspace: Workspace) -> Iterator[ChatViewModel]:
    model = ChatViewModel(workspace, InferenceBridge())
    model.state = ModelState.READY
    model.client.chat = lambda *a, **k: "r1"  # type: ignore[method-assign]
    yield model
    model.shutdown()


def test_a_reply_that_cannot_be_saved_ends_with_a_problem_to_retry(
        qtbot: QtBot, workspace: Workspace, chat: ChatViewModel) -> None:
    view = ConversationView(chat)
    qtbot.addWidget(view)
    view.show()
    reply = chat.send("Hello?")
    assert reply is not None and chat.busy
    _short_wait(workspace.store.conn)
    other = _hold(workspace.home.database)
    try:
        stats = p.ReplyStats(3, 0, 2, 0.1, 10.0, 10.0, 0.2, "stop")
        with qtbot.waitSignal(chat.reply_finished):
            chat._on_event(p.Done("r1", "Hi there.", stats))
    finally:
        other.rollback()
        other.close()
    assert not chat.busy
    assert chat.problem is not None and chat.problem.action == ProblemAction.RETRY
    assert chat.problem.text.startswith("The reply could not be saved: ")
    assert "locked by another program" in chat.problem.text
    qtbot.waitUntil(lambda: view.problem_card.isVisible())
    assert view.problem_card.button.text() == "Try again"


def test_a_message_that_cannot_be_saved_is_not_sent(
        qtbot: QtBot, workspace: Workspace, chat: ChatViewModel) -> None:
    chat.new_conversation()
    _short_wait(workspace.store.conn)
    other = _hold(workspace.home.database)
    try:
        assert chat.send("Hello?") is None
    finally:
        other.rollback()
        other.close()
    assert not chat.busy
    assert chat.problem is not None and chat.problem.action == ProblemAction.NONE
    assert chat.problem.text.startswith("Your message was not sent: ")
    assert "locked by another program" in chat.problem.text


def test_a_person_facing_error_escaping_a_slot_is_shown_not_only_printed(
        qtbot: QtBot, monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QApplication, QMessageBox

    from ui.application import error_hook

    # No window active: the box stands on its own (in a parallel run another test's
    # window could be the active one, and the box its child).
    monkeypatch.setattr(QApplication, "activeWindow", staticmethod(lambda: None))
    printed: list[object] = []
    hook = error_hook(lambda *args: printed.append(args))
    busy = DatabaseBusy("/home/x/hearth.db is locked by another program; close it")
    hook(DatabaseBusy, busy, None)
    boxes = [w for w in QApplication.topLevelWidgets()
             if isinstance(w, QMessageBox) and w.objectName() == "hearth-error"]
    assert boxes and boxes[-1].text() == str(busy) and not printed
    assert boxes[-1].textFormat() == Qt.TextFormat.PlainText
    for box in boxes:
        box.close()
    bug = ValueError("a bug")
    hook(ValueError, bug, None)  # anything else is a bug: printed as before
    assert printed and printed[0][1] is bug
