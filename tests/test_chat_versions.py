"""Regenerated replies keep their earlier versions; edit-and-resend drops what answered
the old text; continuing a versioned reply extends the shown version; old databases
upgrade in place."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from app.chat.conversations import COMPLETE, TRUNCATED, ConversationStore
from app.chat.turn import ChatSession, title_from
from app.db import MIGRATIONS, connect
from app.inference import protocol as p
from app.workspace import Workspace


class RecordingClient:
    """Stands in for the worker: records what would be sent, answers nothing itself."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, list[dict[str, str]], bool]] = []
        self.tools: list[str] = []
        """The tools offered with each request (JSON text, "" for none)."""
        self.samplings: list[Any] = []

    def chat(self, messages: list[dict[str, str]], sampling: Any = None,
             continue_last: bool = False, tools: str = "") -> str:
        request_id = f"r{len(self.requests) + 1}"
        self.requests.append((request_id, messages, continue_last))
        self.tools.append(tools)
        self.samplings.append(sampling)
        return request_id

    def cancel(self, request_id: str) -> None:
        pass


def _done(request_id: str, text: str, finish: str = "stop") -> p.Done:
    return p.Done(request_id, text, p.ReplyStats(10, 0, 3, 0.1, 100.0, 50.0, 0.2, finish))


def _session(workspace: Workspace) -> tuple[ChatSession, RecordingClient, int]:
    client = RecordingClient()
    session = ChatSession(workspace.store, client)  # type: ignore[arg-type]
    return session, client, workspace.store.create().id


def test_regenerate_keeps_versions_and_flips(workspace: Workspace) -> None:
    session, client, cid = _session(workspace)
    first = session.send(cid, "Name a fruit")
    session.handle(_done(first.request_id, "Apple"))
    second = session.regenerate(cid)
    # The model is asked about the conversation before the reply being replaced.
    assert client.requests[-1][1] == [{"role": "user", "content": "Name a fruit"}]
    session.handle(p.Tokens(second.request_id, "Pear", 1))
    finished = session.handle(_done(second.request_id, "Pear"))
    assert finished is second and finished.saved is not None
    store = workspace.store
    messages = store.messages(cid)
    assert len(messages) == 2  # a version, not a new message
    reply = messages[1]
    assert (reply.content, reply.version, reply.version_count) == ("Pear", 1, 2)
    assert [v["content"] for v in reply.versions] == ["Apple", "Pear"]
    assert reply.stats is not None and reply.stats["completion_tokens"] == 3

    store.select_version(reply.id, 0)
    assert store.prompt_messages(cid)[-1] == {"role": "assistant", "content": "Apple"}
    with pytest.raises(IndexError):
        store.select_version(reply.id, 2)
    assert store.list(search="apple")[0].id == cid


def test_failed_regeneration_keeps_the_old_reply(workspace: Workspace) -> None:
    session, _, cid = _session(workspace)
    session.handle(_done(session.send(cid, "Hi").request_id, "Hello!"))
    again = session.regenerate(cid)
    finished = session.handle(p.WorkerDied(None, 9, [], "The model worker stopped."))
    assert finished is again and finished.error == "The model worker stopped."
    reply = workspace.store.messages(cid)[1]
    assert (reply.content, reply.version_count) == ("Hello!", 1)


def test_continue_extends_the_shown_version(workspace: Workspace) -> None:
    session, client, cid = _session(workspace)
    session.handle(_done(session.send(cid, "Count").request_id, "one", "length"))
    session.handle(_done(session.regenerate(cid).request_id, "1, 2", "length"))
    assert workspace.store.messages(cid)[1].status == TRUNCATED
    more = session.continue_reply(cid)
    assert client.requests[-1][2] is True
    session.handle(_done(more.request_id, ", 3"))
    reply = workspace.store.messages(cid)[1]
    assert (reply.content, reply.status) == ("1, 2, 3", COMPLETE)
    assert [v["content"] for v in reply.versions] == ["one", "1, 2, 3"]


def test_edit_and_resend_drops_the_turns_after(workspace: Workspace) -> None:
    session, client, cid = _session(workspace)
    session.handle(_done(session.send(cid, "Capital of France?").request_id, "Paris."))
    session.handle(_done(session.send(cid, "And Spain?").request_id, "Madrid."))
    first_user = workspace.store.messages(cid)[0]
    reply = session.edit_and_resend(cid, first_user.id, "Capital of Italy?")
    assert client.requests[-1][1] == [{"role": "user", "content": "Capital of Italy?"}]
    session.handle(_done(reply.request_id, "Rome."))
    assert [(m.role, m.content) for m in workspace.store.messages(cid)] == [
        ("user", "Capital of Italy?"), ("assistant", "Rome.")]
    assistant = workspace.store.messages(cid)[1]
    with pytest.raises(ValueError):
        session.edit_and_resend(cid, assistant.id, "not mine")


def test_first_message_names_the_conversation(workspace: Workspace) -> None:
    session, _, cid = _session(workspace)
    session.send(cid, "How do I reverse a list in Python without copying it?\nThanks")
    title = workspace.store.get(cid).title
    assert title.startswith("How do I reverse a list") and len(title) <= 49
    assert title_from("") == "New chat"


def test_a_version_1_database_upgrades(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(MIGRATIONS[0])
    old.execute("INSERT INTO conversations (title, created_at, updated_at)"
                " VALUES ('kept', 'x', 'x')")
    old.execute("INSERT INTO messages (conversation_id, position, role, content,"
                " created_at) VALUES (1, 0, 'user', 'hello', 'x')")
    old.execute("PRAGMA user_version=1")
    old.commit()
    old.close()
    conn = connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    (message,) = ConversationStore(conn).messages(1)
    assert (message.content, message.versions, message.version_count) == ("hello", [], 1)
    conn.close()
