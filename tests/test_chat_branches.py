"""Branches (issue 15, item 4): edit and resend makes a new branch and keeps the old one,
reachable with ‹ n/m ›; "Branch from here" on any message; what the model sees follows
the chosen branch; old databases upgrade in place."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.chat.conversations import ConversationStore, model_messages
from app.db import MIGRATIONS, connect
from app.workspace import Workspace
from tests.test_chat_versions import _done, _session
from ui.chat.chat_view_model import ChatViewModel, ModelState
from ui.chat.conversation_view import ConversationView
from ui.chat.inference_bridge import InferenceBridge
from ui.chat.message_widget import MessageWidget


def _texts(store: ConversationStore, cid: int) -> list[str]:
    return [m.content for m in store.messages(cid)]


def _model_sees(store: ConversationStore, cid: int) -> list[str]:
    return [m["content"] for m in model_messages(store.get(cid), store.messages(cid))]


def test_edit_and_resend_keeps_the_old_turns_as_a_branch(workspace: Workspace) -> None:
    session, client, cid = _session(workspace)
    store = workspace.store
    session.handle(_done(session.send(cid, "Capital of France?").request_id, "Paris."))
    session.handle(_done(session.send(cid, "And Spain?").request_id, "Madrid."))
    first = store.messages(cid)[0]
    session.handle(_done(session.edit_and_resend(cid, first.id, "Capital of Italy?")
                         .request_id, "Rome."))
    assert _texts(store, cid) == ["Capital of Italy?", "Rome."]
    edited = store.messages(cid)[0]
    assert (edited.branch, edited.branch_count) == (1, 2)
    # The old branch, as it was left, one ‹ away; the model sees the branch shown.
    store.select_branch(edited.id, 0)
    assert _texts(store, cid) == ["Capital of France?", "Paris.", "And Spain?", "Madrid."]
    assert _model_sees(store, cid) == _texts(store, cid)
    session.handle(_done(session.send(cid, "And Portugal?").request_id, "Lisbon."))
    assert client.requests[-1][1][-1] == {"role": "user", "content": "And Portugal?"}
    assert [m["content"] for m in client.requests[-1][1]] == [
        "Capital of France?", "Paris.", "And Spain?", "Madrid.", "And Portugal?"]
    store.select_branch(edited.id, 1)
    assert _texts(store, cid) == ["Capital of Italy?", "Rome."]
    with pytest.raises(IndexError):
        store.select_branch(edited.id, 2)


def test_branch_from_here_keeps_what_followed(workspace: Workspace) -> None:
    session, client, cid = _session(workspace)
    store = workspace.store
    session.handle(_done(session.send(cid, "Tell me a joke").request_id, "Why did…"))
    session.handle(_done(session.send(cid, "Another").request_id, "Knock knock."))
    reply = store.messages(cid)[1]
    store.branch_from(reply.id)
    shown = store.messages(cid)
    assert _texts(store, cid) == ["Tell me a joke", "Why did…"]
    assert shown[-1].hidden_after == 1  # "Another" and its reply are kept, not shown
    session.handle(_done(session.send(cid, "Explain it").request_id, "Because…"))
    assert [m["content"] for m in client.requests[-1][1]] == [
        "Tell me a joke", "Why did…", "Explain it"]
    new = store.messages(cid)[2]
    assert (new.branch, new.branch_count) == (1, 2)
    store.select_branch(new.id, 0)
    assert _texts(store, cid) == ["Tell me a joke", "Why did…", "Another", "Knock knock."]
    # Branch from a message and come back without sending: nothing is lost either.
    store.branch_from(reply.id)
    store.show_later(reply.id)
    assert len(store.messages(cid)) == 4


def test_a_version_3_database_upgrades_to_branches(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    for script in MIGRATIONS[:3]:
        old.executescript(script)
    old.execute("INSERT INTO conversations (title, created_at, updated_at)"
                " VALUES ('kept', 'x', 'x')")
    for position, (role, text) in enumerate([("user", "hi"), ("assistant", "hello"),
                                             ("user", "bye"), ("assistant", "see you")]):
        old.execute("INSERT INTO messages (conversation_id, position, role, content,"
                    " created_at) VALUES (1, ?, ?, ?, 'x')", (position, role, text))
    old.execute("PRAGMA user_version=3")
    old.commit()
    old.close()
    conn = connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
        store = ConversationStore(conn)
        assert _texts(store, 1) == ["hi", "hello", "bye", "see you"]
        assert all(m.branch_count == 1 for m in store.messages(1))
        store.add_message(1, "user", "again")
        assert _texts(store, 1)[-1] == "again" and store.messages(1)[-1].position == 4
    finally:
        conn.close()


@pytest.fixture
def view(qtbot: QtBot, workspace: Workspace) -> Iterator[ConversationView]:
    chat = ChatViewModel(workspace, InferenceBridge())
    chat.state = ModelState.READY  # what the buttons need; no reply is asked for in this test
    widget = ConversationView(chat)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.shutdown()
    chat.shutdown()


def _shown(qtbot: QtBot, view: ConversationView, n: int) -> list[MessageWidget]:
    def found() -> list[MessageWidget]:
        return [view.widgets[m.id] for m in view.chat.messages() if m.id in view.widgets]
    qtbot.waitUntil(lambda: len(found()) == n, timeout=5000)
    return found()


def test_the_branch_control_moves_between_branches(qtbot: QtBot, workspace: Workspace,
                                                   view: ConversationView) -> None:
    store = workspace.store
    cid = store.create().id
    first = store.add_message(cid, "user", "Capital of France?")
    store.add_message(cid, "assistant", "Paris.")
    store.branch_beside(first.id, "Capital of Italy?")
    store.add_message(cid, "assistant", "Rome.")
    view.chat.open_conversation(cid)
    user = _shown(qtbot, view, 2)[0]
    bar = user.branches
    assert bar.label.isVisibleTo(view) and bar.label.text() == "branch 2/2"
    assert bar.prev_button.isEnabled() and not bar.next_button.isEnabled()
    bar.prev_button.click()
    widgets = _shown(qtbot, view, 2)
    assert [w.text() for w in widgets] == ["Capital of France?", "Paris."]
    assert widgets[0].branches.label.text() == "branch 1/2"
    # "Branch from here" on the first message; the later ones come back with one click.
    widgets[0].branches.branch_button.click()
    only = _shown(qtbot, view, 1)[0]
    assert only.branches.later_button.isVisibleTo(view)
    only.branches.later_button.click()
    assert [w.text() for w in _shown(qtbot, view, 2)] == ["Capital of France?", "Paris."]
    assert len({m.id for m in store.messages(cid)}) == 2
    assert store.conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 4


