"""Conversations and their messages, kept in SQLite.

Each message is written in its own transaction as soon as it is final, so closing the
window, a crashed worker or a crashed app loses at most the reply being streamed, and a
reply cut short is stored with what was produced so far and a status saying why.

A conversation is a tree: each message follows a parent, and messages with the same
parent are *branches* of one another, as a regenerated reply's versions are of one
another one level down. Editing and resending a message starts a branch beside it;
"Branch from here" ends the shown branch at a message, so the next message starts a new
one. Nothing is deleted: the conversation shows one branch (its ``leaf_id`` and the
messages above it), and :meth:`ConversationStore.messages` — and so
:func:`model_messages`, what the model sees — follows it.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from app.chat.tool_steps import StepList, ToolStep, model_turns
from app.db import Database
from app.docs.citing import Source, SourceList

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
    parent_id: int | None = None
    # Where this message stands among its branches (messages with the same parent):
    # ``branch`` is its index, ``branch_count`` how many there are.
    branch: int = 0
    branch_count: int = 1
    # Messages after this one that the shown branch does not show (it ends here after
    # "Branch from here"): they can be shown again.
    hidden_after: int = 0
    # A reply that called tools: its calls, decisions and results (app.chat.tool_steps).
    tool_steps: list[ToolStep] = field(default_factory=list)
    # A reply answered from documents: the numbered passages it cites (app.docs.citing).
    sources: list[Source] = field(default_factory=list)

    @property
    def version_count(self) -> int:
        return max(1, len(self.versions))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class UnknownConversation(LookupError):
    pass


class _Shown:
    """``add_message``'s default place: after the shown branch's last message."""


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
        return self.get(cur.inserted_id)

    def add_whole(self, title: str, model: str | None, system_prompt: str,
                  messages: list[tuple[str, str]],
                  stats: list[dict[str, Any] | None] | None = None,
                  tool_steps: dict[int, list[ToolStep]] | None = None) -> int:
        """Store a finished conversation (an import) in one transaction: all of it or,
        on any error, none of it, so an import can say exactly what it stored.
        ``stats``, one per message, says where an imported reply came from;
        ``tool_steps`` holds the calls of replies that made some, by index."""
        now = _now()
        stats = stats or [None] * len(messages)
        tool_steps = tool_steps or {}
        with self.conn.transaction():
            cid = self.conn.execute(
                "INSERT INTO conversations (title, model, system_prompt, settings,"
                " created_at, updated_at) VALUES (?, ?, ?, '{}', ?, ?)",
                (title, model, system_prompt, now, now)).inserted_id
            parent = None
            for position, ((role, content), about) in enumerate(
                    zip(messages, stats, strict=True)):
                parent = self.conn.execute(
                    "INSERT INTO messages (conversation_id, position, role, content, status,"
                    " stats, created_at, parent_id, tool_steps)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (cid, position, role, content, COMPLETE,
                     json.dumps(about) if about is not None else None, now, parent,
                     StepList(tool_steps.get(position, [])).dumps())).inserted_id
            self.conn.execute("UPDATE conversations SET leaf_id = ? WHERE id = ?",
                              (parent, cid))
        return cid

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
                    status: str = COMPLETE, stats: dict[str, Any] | None = None,
                    after: int | None | type[_Shown] = _Shown,
                    tool_steps: builtins.list[ToolStep] | None = None) -> Message:
        """Add a message after ``after`` (a message id; None: as a first message), by
        default after the shown branch's last one; the new message is then shown."""
        now = _now()
        with self.conn.transaction():
            parent = self._leaf(conversation_id) if isinstance(after, type) else after
            position = 0 if parent is None else self.conn.execute(
                "SELECT position + 1 FROM messages WHERE id = ?", (parent,)).fetchone()[0]
            cur = self.conn.execute(
                "INSERT INTO messages (conversation_id, position, role, content, status,"
                " stats, created_at, parent_id, tool_steps)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, position, role, content, status,
                 json.dumps(stats) if stats is not None else None, now, parent,
                 StepList(tool_steps or []).dumps()))
            self.conn.execute("UPDATE conversations SET updated_at = ?, leaf_id = ?"
                              " WHERE id = ?", (now, cur.inserted_id, conversation_id))
        return Message(cur.inserted_id, conversation_id, position, role, content, status,
                       stats, now, parent_id=parent, tool_steps=list(tool_steps or []))

    def set_tool_steps(self, message_id: int, steps: builtins.list[ToolStep]) -> None:
        """Record the person's decisions and the results of a reply's calls."""
        with self.conn.transaction():
            self.conn.execute("UPDATE messages SET tool_steps = ? WHERE id = ?",
                              (StepList(steps).dumps(), message_id))

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

    def _show(self, message_id: int, versions: builtins.list[dict[str, Any]], index: int) -> None:
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

    def messages(self, conversation_id: int) -> builtins.list[Message]:
        """The shown branch, first message first, each knowing its place among its
        branches."""
        rows = self.conn.execute(
            "WITH RECURSIVE path(id) AS ("
            " SELECT leaf_id FROM conversations WHERE id = ? AND leaf_id IS NOT NULL"
            " UNION ALL SELECT m.parent_id FROM messages m JOIN path ON m.id = path.id"
            " WHERE m.parent_id IS NOT NULL)"
            " SELECT messages.* FROM messages JOIN path ON messages.id = path.id"
            " ORDER BY messages.position", (conversation_id,)).fetchall()
        messages = [_message(r) for r in rows]
        if not messages:
            return messages
        children: dict[int | None, builtins.list[int]] = {}
        for row in self.conn.execute("SELECT id, parent_id FROM messages WHERE"
                                     " conversation_id = ? ORDER BY id", (conversation_id,)):
            children.setdefault(row["parent_id"], []).append(row["id"])
        for m in messages:
            siblings = children.get(m.parent_id, [m.id])
            m.branch, m.branch_count = siblings.index(m.id), len(siblings)
        messages[-1].hidden_after = len(children.get(messages[-1].id, []))
        return messages

    # ---------------------------------------------------------------- branches

    def branch_beside(self, message_id: int, content: str) -> Message:
        """A new message of the same role beside ``message_id`` (edit and resend): a
        branch of its own; the old message and all after it stay, one branch away."""
        message = self.message(message_id)
        return self.add_message(message.conversation_id, message.role, content,
                                after=message.parent_id)

    def branch_from(self, message_id: int) -> Message:
        """End the shown branch at ``message_id``: the next message starts a new branch,
        and the messages that followed stay reachable (:meth:`show_later`)."""
        message = self.message(message_id)
        self._set_leaf(message.conversation_id, message.id)
        return message

    def select_branch(self, message_id: int, index: int) -> Message:
        """Show branch ``index`` of those beside ``message_id``, as it was last left
        (down to its most recent message)."""
        message = self.message(message_id)
        siblings = [r["id"] for r in self.conn.execute(
            "SELECT id FROM messages WHERE conversation_id = ? AND parent_id IS ?"
            " ORDER BY id", (message.conversation_id, message.parent_id))]
        if not 0 <= index < len(siblings):
            raise IndexError(f"message {message_id} has {len(siblings)} branch(es), "
                             f"not {index + 1}")
        self.show_later(siblings[index])
        return self.message(siblings[index])

    def show_later(self, message_id: int) -> None:
        """Show the branch through ``message_id`` down to its most recent message (the
        newest message under it has nothing after it, so it ends a branch)."""
        newest = self.conn.execute(
            "WITH RECURSIVE below(id) AS (SELECT ? UNION ALL SELECT m.id FROM messages m"
            " JOIN below ON m.parent_id = below.id) SELECT MAX(id) FROM below",
            (message_id,)).fetchone()[0]
        self._set_leaf(self.message(message_id).conversation_id, newest)

    def _leaf(self, conversation_id: int) -> int | None:
        row = self.conn.execute("SELECT leaf_id FROM conversations WHERE id = ?",
                                (conversation_id,)).fetchone()
        if row is None:
            raise UnknownConversation(f"no conversation {conversation_id}")
        return row["leaf_id"]

    def set_sources(self, message_id: int, sources: builtins.list[Source]) -> None:
        """Keep the passages a reply was given beside it (its [1], [2] name them)."""
        with self.conn.transaction():
            self.conn.execute("UPDATE messages SET sources = ? WHERE id = ?",
                              (SourceList(sources).dumps(), message_id))

    def _set_leaf(self, conversation_id: int, message_id: int | None) -> None:
        self.conn.execute("UPDATE conversations SET leaf_id = ?, updated_at = ? WHERE id = ?",
                          (message_id, _now(), conversation_id))

    def prompt_messages(self, conversation_id: int, before: int | None = None
                        ) -> builtins.list[dict[str, str]]:
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
    for m in messages:
        if before is not None and m.position >= before:
            break
        if m.tool_steps:
            out.extend(model_turns(m.content, m.tool_steps))
        elif m.content or m.role == "user":
            out.append({"role": m.role, "content": m.content})
    return out


def _message(r: sqlite3.Row) -> Message:
    return Message(id=r["id"], conversation_id=r["conversation_id"], position=r["position"],
                   role=r["role"], content=r["content"], status=r["status"],
                   stats=json.loads(r["stats"]) if r["stats"] else None,
                   created_at=r["created_at"], versions=json.loads(r["versions"]),
                   version=r["version"], parent_id=r["parent_id"],
                   tool_steps=StepList.loads(r["tool_steps"]).steps,
                   sources=SourceList.loads(r["sources"]).sources)


def _version_of(message: Message) -> dict[str, Any]:
    return {"content": message.content, "status": message.status, "stats": message.stats,
            "created_at": message.created_at}
