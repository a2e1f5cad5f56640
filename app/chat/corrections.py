"""Teach from chat: corrections a person makes to replies, kept as training examples.

Correcting a chatbot normally fixes nothing for next time: the correction lives in the
conversation, not in the weights. Here each correction becomes a training example — the
conversation up to that reply, with the corrected reply as the target — and the original
reply is kept beside it as the rejected alternative, so the same collection can later
drive preference tuning (chosen vs rejected) as well as plain fine-tuning.

Examples are snapshots: editing or deleting the conversation afterwards does not change
what was collected. Training takes a snapshot of them in turn (:meth:`CorrectionStore.snapshot`,
:func:`save_rows`): a dataset file named by its content, which a run's provenance keeps
pointing at while the corrections go on changing.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.atomic import atomic_write_text
from app.chat.conversations import ConversationStore
from app.db import Database
from app.errors import ExitCode, HearthError


class CorrectionError(HearthError, ValueError):
    """A correction that cannot be made as asked (an empty reply, a user message)."""

    exit_code = ExitCode.BAD_INPUT


@dataclass
class TrainingExample:
    id: int
    conversation_id: int | None
    model: str | None
    messages: list[dict[str, str]]  # ends with the corrected assistant reply
    rejected: str
    created_at: str
    updated_at: str

    @property
    def corrected(self) -> str:
        return self.messages[-1]["content"]

    @property
    def prompt(self) -> list[dict[str, str]]:
        return self.messages[:-1]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CorrectionStore:
    def __init__(self, conn: Database) -> None:
        self.conn = conn

    def add_from_conversation(self, store: ConversationStore, message_id: int,
                              corrected: str) -> TrainingExample:
        """Save the conversation up to assistant message ``message_id``, corrected."""
        if not corrected.strip():
            raise CorrectionError("the corrected reply is empty")
        row = self.conn.execute("SELECT conversation_id, position, role, content FROM messages"
                                " WHERE id = ?", (message_id,)).fetchone()
        if row is None or row["role"] != "assistant":
            raise CorrectionError("only an assistant reply can be corrected")
        conversation = store.get(row["conversation_id"])
        # By position, not by slicing: the prompt leaves empty replies (one cancelled
        # before its first token) out, so counting entries would reach past this reply.
        history = store.prompt_messages(conversation.id, before=row["position"])
        messages = [*history, {"role": "assistant", "content": corrected}]
        now = _now()
        cur = self.conn.execute(
            "INSERT INTO training_examples (conversation_id, model, messages, rejected,"
            " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (conversation.id, conversation.model, json.dumps(messages), row["content"], now,
             now))
        return self.get(cur.inserted_id)

    def get(self, example_id: int) -> TrainingExample:
        row = self.conn.execute("SELECT * FROM training_examples WHERE id = ?",
                                (example_id,)).fetchone()
        if row is None:
            raise LookupError(f"no training example {example_id}")
        return self._example(row)

    def list(self) -> list[TrainingExample]:
        rows = self.conn.execute("SELECT * FROM training_examples ORDER BY id").fetchall()
        return [self._example(r) for r in rows]

    def count(self) -> int:
        return self.conn.execute("SELECT COUNT(*) FROM training_examples").fetchone()[0]

    def update(self, example_id: int, corrected: str) -> TrainingExample:
        if not corrected.strip():
            raise CorrectionError("the corrected reply is empty")
        example = self.get(example_id)
        messages = [*example.prompt, {"role": "assistant", "content": corrected}]
        self.conn.execute("UPDATE training_examples SET messages = ?, updated_at = ?"
                          " WHERE id = ?", (json.dumps(messages), _now(), example_id))
        return self.get(example_id)

    def delete(self, example_id: int) -> None:
        self.conn.execute("DELETE FROM training_examples WHERE id = ?", (example_id,))

    def rows(self, preference: bool = False) -> builtins.list[dict[str, Any]]:
        """The examples as dataset records. Plain: OpenAI chat format
        (``{"messages": [...]}``), which the fine-tuning engine reads. Preference:
        ``{"prompt", "chosen", "rejected"}`` for DPO-style tuning."""
        return [{"prompt": ex.prompt, "chosen": ex.corrected, "rejected": ex.rejected}
                if preference else {"messages": ex.messages} for ex in self.list()]

    def export_jsonl(self, path: Path, preference: bool = False) -> int:
        """Write the examples as a dataset file; returns how many were written."""
        rows = self.rows(preference)
        atomic_write_text(path, jsonl(rows))
        return len(rows)

    def snapshot(self, folder: Path) -> Path:
        """The examples as they are now, as a dataset file in ``folder`` (the home's
        datasets): what a fine-tune of "Corrections from chats" trains on."""
        return save_rows(folder, "corrections", self.rows())

    @staticmethod
    def _example(row: sqlite3.Row) -> TrainingExample:
        return TrainingExample(id=row["id"], conversation_id=row["conversation_id"],
                               model=row["model"], messages=json.loads(row["messages"]),
                               rejected=row["rejected"], created_at=row["created_at"],
                               updated_at=row["updated_at"])


def jsonl(rows: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def save_rows(folder: Path, prefix: str, rows: Iterable[dict[str, Any]]) -> Path:
    """``rows`` as a JSONL dataset file in ``folder``, named by their content
    (``<prefix>-<sha256[:12]>.jsonl``): a run's provenance keeps pointing at exactly
    what it trained on, and the same rows again are the same file, not a new one.
    Written atomically and owner-only, as everything in the home is."""
    text = jsonl(rows)
    target = folder / f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.jsonl"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, text, private=True)
    return target
