"""Teach from chat: corrections a person makes to replies, kept as training examples.

Correcting a chatbot normally fixes nothing for next time: the correction lives in the
conversation, not in the weights. Here each correction becomes a training example — the
conversation up to that reply, with the corrected reply as the target — and the original
reply is kept beside it as the rejected alternative, so the same collection can later
drive preference tuning (chosen vs rejected) as well as plain fine-tuning.

Examples are snapshots: editing or deleting the conversation afterwards does not change
what was collected.
"""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from app.chat.conversations import ConversationStore
from app.db import Database


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
            raise ValueError("the corrected reply is empty")
        row = self.conn.execute("SELECT conversation_id, position, role, content FROM messages"
                                " WHERE id = ?", (message_id,)).fetchone()
        if row is None or row["role"] != "assistant":
            raise ValueError("only an assistant reply can be corrected")
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
        return self.get(cur.lastrowid)

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
            raise ValueError("the corrected reply is empty")
        example = self.get(example_id)
        messages = [*example.prompt, {"role": "assistant", "content": corrected}]
        self.conn.execute("UPDATE training_examples SET messages = ?, updated_at = ?"
                          " WHERE id = ?", (json.dumps(messages), _now(), example_id))
        return self.get(example_id)

    def delete(self, example_id: int) -> None:
        self.conn.execute("DELETE FROM training_examples WHERE id = ?", (example_id,))

    def export_jsonl(self, path: Path, preference: bool = False) -> int:
        """Write the examples as a dataset file; returns how many were written.

        Plain: OpenAI chat format (``{"messages": [...]}``), which the fine-tuning engine
        reads. Preference: ``{"prompt", "chosen", "rejected"}`` for DPO-style tuning.
        """
        examples = self.list()
        tmp = path.with_suffix(path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as out:
            for ex in examples:
                record = ({"prompt": ex.prompt, "chosen": ex.corrected,
                           "rejected": ex.rejected} if preference
                          else {"messages": ex.messages})
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
        return len(examples)

    @staticmethod
    def _example(row: sqlite3.Row) -> TrainingExample:
        return TrainingExample(id=row["id"], conversation_id=row["conversation_id"],
                               model=row["model"], messages=json.loads(row["messages"]),
                               rejected=row["rejected"], created_at=row["created_at"],
                               updated_at=row["updated_at"])
