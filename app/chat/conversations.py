"""Conversations and their messages, kept in SQLite.

Each message is written in its own transaction as soon as it is final, so closing the
window, a crashed worker or a crashed app loses at most the reply being streamed, and a
reply cut short is stored with what was produced so far and a status saying why.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.db import Database

# Message status values: a finished reply, one the person stopped, one cut by a
# worker crash or error, and one cut by the token limit (which "Continue" can extend).
COMPLETE, CANCELLED, INTERRUPTED, TRUNCATED = "complete", "cancelled", "interrupted", "truncated"


@dataclass
class Conversation:
    id: int
    title: str
    model: str | None
    system_prompt: str
    settings: dict[str, Any]
    created_at: str
    updated_at: str


@dataclass
class Message:
    id: int
    conversation_id: int
    position: int
    role: str
    content: str
    status: str = COMPLETE
    stats: dict[str, Any] | None = None
    created_at: str = field(default="")
    # Every version of a regenerated reply ({content, status, stats, created_at}); empty
    # while there is only one. ``version`` is the index of the one shown.
    versions: list[dict[str, Any]] = field(default_factory=list)
    version: int = 0

    @property
    def version_count(self) -> int:
        return max(1, len(self.versions))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class UnknownConversation(LookupError):
    pass


class ConversationStore:
    def __init__(self, conn: Database) -> None:
        self.conn = conn

    # ----------------------------------------------------------- conversations

    def create(self, title: str = "New chat", model: str | None = None,
               system_prompt: str = "", settings: dict[str, Any] | None = None
               ) -> Conversation:
        now = _now()
        cur = self.conn.execute(
            "INSERT INTO conversations (title, model, system_prompt, settings, created_at,"
            " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (title, model, system_prompt, json.dumps(settings or {}), now, now))
        return self.get(cur.lastrowid)

    def get(self, conversation_id: int) -> Conversation:
        row = self.conn.execute("SELECT * FROM conversations WHERE id = ?",
                                (conversation_id,)).fetchone()
        if row is None:
            raise UnknownConversation(f"no conversation {conversation_id}")
        return self._conversation(row)

    def list(self, search: str | None = None) -> list[Conversation]:
        """Newest first; ``search`` matches titles and message text, case-insensitively."""
        if search:
            pattern = f"%{search}%"
            rows = self.conn.execute(
                "SELECT * FROM conversations c WHERE c.title LIKE ? OR EXISTS ("
                " SELECT 1 FROM messages m WHERE m.conversation_id = c.id"
                " AND m.content LIKE ?) ORDER BY c.updated_at DESC, c.id DESC",
                (pattern, pattern)).fetchall()
        else:
            rows = self.conn.execute(
                "SELECT * FROM conversations ORDER BY updated_at DESC, id DESC").fetchall()
        return [self._conversation(r) for r in rows]

    def update(self, conversation_id: int, **changes: Any) -> Conversation:
        allowed = {"title", "model", "system_prompt", "settings"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {sorted(unknown)}")
        if "settings" in changes:
            changes["settings"] = json.dumps(changes["settings"])
        assignments = ", ".join(f"{k} = ?" for k in changes)
        self.conn.execute(
            f"UPDATE conversations SET {assignments}, updated_at = ? WHERE id = ?",
            (*changes.values(), _now(), conversation_id))
        return self.get(conversation_id)

    def delete(self, conversation_id: int) -> None:
        self.conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    @staticmethod
    def _conversation(row: sqlite3.Row) -> Conversation:
        return Conversation(id=row["id"], title=row["title"], model=row["model"],
                            system_prompt=row["system_prompt"],
                            settings=json.loads(row["settings"]),
                            created_at=row["created_at"], updated_at=row["updated_at"])

    # ---------------------------------------------------------------- messages

    def add_message(self, conversation_id: int, role: str, content: str,
                    status: str = COMPLETE, stats: dict[str, Any] | None = None) -> Message:
        now = _now()
        with self.conn.transaction():
            position = self.conn.execute(
                "SELECT COALESCE(MAX(position), -1) + 1 FROM messages"
                " WHERE conversation_id = ?", (conversation_id,)).fetchone()[0]
            cur = self.conn.execute(
                "INSERT INTO messages (conversation_id, position, role, content, status,"
                " stats, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, position, role, content, status,
                 json.dumps(stats) if stats is not None else None, now))
            self.conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?",
                              (now, conversation_id))
        return Message(cur.lastrowid, conversation_id, position, role, content, status,
                       stats, now)

    def update_message(self, message_id: int, *, content: str | None = None,
                       status: str | None = None, stats: dict[str, Any] | None = None
                       ) -> None:
        sets, values = [], []
        for column, value in (("content", content), ("status", status)):
            if value is not None:
                sets.append(f"{column} = ?")
                values.append(value)
        if stats is not None:
            sets.append("stats = ?")
            values.append(json.dumps(stats))
        if not sets:
            return
        with self.conn.transaction():
            self.conn.execute(f"UPDATE messages SET {', '.join(sets)} WHERE id = ?",
                              (*values, message_id))
            # A continued reply that has versions: the shown version changes with it.
            row = self.conn.execute("SELECT content, status, stats, versions, version"
                                    " FROM messages WHERE id = ?", (message_id,)).fetchone()
            versions = json.loads(row["versions"]) if row else []
            if versions:
                versions[row["version"]].update(
                    content=row["content"], status=row["status"],
                    stats=json.loads(row["stats"]) if row["stats"] else None)
                self.conn.execute("UPDATE messages SET versions = ? WHERE id = ?",
                                  (json.dumps(versions), message_id))

    def add_version(self, message_id: int, content: str, status: str = COMPLETE,
                    stats: dict[str, Any] | None = None) -> Message:
        """Make a regenerated reply the shown version, keeping the earlier ones."""
        with self.conn.transaction():  # read, add, write back: no other write between
            message = self.message(message_id)
            versions = message.versions or [_version_of(message)]
            versions.append({"content": content, "status": status, "stats": stats,
                             "created_at": _now()})
            self._show(message_id, versions, len(versions) - 1)
        return self.message(message_id)

    def select_version(self, message_id: int, index: int) -> Message:
        """Show version ``index`` of a reply (what the model sees from then on)."""
        with self.conn.transaction():
            message = self.message(message_id)
            versions = message.versions or [_version_of(message)]
            if not 0 <= index < len(versions):
                raise IndexError(f"reply {message_id} has {len(versions)} version(s), "
                                 f"not {index + 1}")
            self._show(message_id, versions, index)
        return self.message(message_id)

    def _show(self, message_id: int, versions: list[dict[str, Any]], index: int) -> None:
        shown = versions[index]
        stats = shown.get("stats")
        self.conn.execute(
            "UPDATE messages SET content = ?, status = ?, stats = ?, versions = ?,"
            " version = ? WHERE id = ?",
            (shown["content"], shown["status"], json.dumps(stats) if stats is not None
             else None, json.dumps(versions), index, message_id))

    def message(self, message_id: int) -> Message:
        row = self.conn.execute("SELECT * FROM messages WHERE id = ?",
                                (message_id,)).fetchone()
        if row is None:
            raise LookupError(f"no message {message_id}")
        return _message(row)

    def delete_messages_from(self, conversation_id: int, position: int) -> None:
        """Drop the message at ``position`` and everything after it (edit and resend)."""
        self.conn.execute("DELETE FROM messages WHERE conversation_id = ? AND position >= ?",
                          (conversation_id, position))

    def messages(self, conversation_id: int) -> list[Message]:
        rows = self.conn.execute(
            "SELECT * FROM messages WHERE conversation_id = ? ORDER BY position",
            (conversation_id,)).fetchall()
        return [_message(r) for r in rows]

    def prompt_messages(self, conversation_id: int, before: int | None = None
                        ) -> list[dict[str, str]]:
        """The conversation as the model sees it: system prompt first, then the turns.

        ``before`` stops at that position: regenerating a reply asks the model about the
        conversation as it stood before it.
        """
        return model_messages(self.get(conversation_id), self.messages(conversation_id),
                              before)


def model_messages(conversation: Conversation, messages: list[Message],
                   before: int | None = None) -> list[dict[str, str]]:
    """The conversation as the model sees it: the one place that decides it.

    The system prompt (when it says anything) comes first, then each message's shown
    version; an empty assistant reply (stopped before its first token) is left out, an
    empty message of the person's is kept. ``before`` stops at that position. The chat,
    the corrections collected from it and the OpenAI-format export all build on this.
    """
    out: list[dict[str, str]] = []
    if conversation.system_prompt.strip():
        out.append({"role": "system", "content": conversation.system_prompt})
    out.extend({"role": m.role, "content": m.content} for m in messages
               if (m.content or m.role == "user") and (before is None or m.position < before))
    return out


def _message(r: sqlite3.Row) -> Message:
    return Message(id=r["id"], conversation_id=r["conversation_id"], position=r["position"],
                   role=r["role"], content=r["content"], status=r["status"],
                   stats=json.loads(r["stats"]) if r["stats"] else None,
                   created_at=r["created_at"], versions=json.loads(r["versions"]),
                   version=r["version"])


def _version_of(message: Message) -> dict[str, Any]:
    return {"content": message.content, "status": message.status, "stats": message.stats,
            "created_at": message.created_at}
