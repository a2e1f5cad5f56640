"""hearth.db shared by several threads: transactions never interleave (app.db.Database)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from app.chat.conversations import ConversationStore
from app.db import connect

PER_THREAD = 150


def test_two_threads_hammering_one_conversation_keep_every_message_in_order(
        tmp_path: Path) -> None:
    db = connect(tmp_path / "hearth.db")
    store = ConversationStore(db)
    conversation = store.create("hammered")
    reply = store.add_message(conversation.id, "assistant", "first")
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def writer(name: str) -> None:
        try:
            start.wait()
            for i in range(PER_THREAD):
                # add_message reads the next position and inserts in one transaction;
                # add_version reads the versions and writes them back in another.
                store.add_message(conversation.id, "user", f"{name} {i}")
                if i % 10 == 0:
                    store.add_version(reply.id, f"{name} version {i}")
                    store.update_message(reply.id, content=f"{name} continued {i}")
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    messages = store.messages(conversation.id)
    assert [m.position for m in messages] == list(range(1 + 2 * PER_THREAD))
    for name in ("a", "b"):
        assert [m.content for m in messages[1:] if m.content.startswith(f"{name} ")] == [
            f"{name} {i}" for i in range(PER_THREAD)]
    # 1 original + 15 versions from each thread; none lost to a concurrent read-modify-write
    assert store.message(reply.id).version_count == 1 + 2 * (PER_THREAD // 10)
    db.close()


def test_a_rolled_back_transaction_does_not_take_another_threads_write_with_it(
        tmp_path: Path) -> None:
    db = connect(tmp_path / "hearth.db")
    store = ConversationStore(db)
    inside, other_done = threading.Event(), threading.Event()
    kept: list[int] = []

    def other_thread() -> None:
        inside.wait(timeout=10)
        kept.append(store.create("written while the other thread was mid-transaction").id)
        other_done.set()

    thread = threading.Thread(target=other_thread)
    thread.start()
    with pytest.raises(RuntimeError, match="changed my mind"), db.transaction():
        db.execute("INSERT INTO conversations (title, created_at, updated_at)"
                   " VALUES ('rolled back', 'x', 'x')")
        inside.set()
        # The other thread's write waits for this transaction instead of joining it.
        assert not other_done.wait(timeout=0.5)
        raise RuntimeError("changed my mind")
    thread.join(timeout=10)
    assert other_done.is_set()
    assert [c.title for c in store.list()] == [
        "written while the other thread was mid-transaction"]
    assert [c.id for c in store.list()] == kept
    db.close()


def test_results_are_read_before_the_lock_is_let_go(tmp_path: Path) -> None:
    db = connect(tmp_path / "hearth.db")
    store = ConversationStore(db)
    for title in ("one", "two", "three"):
        store.create(title)
    result = db.execute("SELECT title FROM conversations ORDER BY id")
    store.create("four")  # a write after the query does not change what it returned
    assert result.fetchone()["title"] == "one"
    assert [r["title"] for r in result] == ["two", "three"]
    assert result.fetchone() is None
    db.close()
