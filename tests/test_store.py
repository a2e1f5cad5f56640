"""Conversations survive: stored per message, searchable, kept across connections."""

from __future__ import annotations

from pathlib import Path

from app.chat.conversations import CANCELLED
from app.workspace import Workspace, open_workspace


def test_conversation_round_trip(workspace: Workspace, home_dir: Path) -> None:
    store = workspace.store
    conv = store.create(title="Rust questions", model="m", system_prompt="Be brief.")
    store.add_message(conv.id, "user", "What is a borrow checker?")
    store.add_message(conv.id, "assistant", "It checks references.", CANCELLED,
                      {"completion_tokens": 4})
    other = store.create(title="Cooking")
    store.add_message(other.id, "user", "How long to boil an egg?")

    assert [c.title for c in store.list()] == ["Cooking", "Rust questions"]
    assert [c.title for c in store.list(search="borrow")] == ["Rust questions"]
    assert [c.title for c in store.list(search="cook")] == ["Cooking"]
    assert store.prompt_messages(conv.id) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is a borrow checker?"},
        {"role": "assistant", "content": "It checks references."},
    ]
    workspace.close()

    reopened = open_workspace(home_dir, register_starter=False)
    messages = reopened.store.messages(conv.id)
    assert [m.position for m in messages] == [0, 1]
    assert messages[1].status == CANCELLED and messages[1].stats == {"completion_tokens": 4}
    assert reopened.library.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.store.update(conv.id, title="Borrowing")
    reopened.store.delete(other.id)
    assert [c.title for c in reopened.store.list()] == ["Borrowing"]
    reopened.close()
