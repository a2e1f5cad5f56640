"""Teach from chat: corrections a person makes to replies, kept as training examples.

Correcting a chatbot normally fixes nothing for next time: the correction lives in the
conversation, not in the weights. Here each correction becomes a training example — the
conversation up to that reply, with the corrected reply as the target — and the original
reply is kept beside it as the rejected alternative, so the same collection can later
drive preference tuning (chosen vs rejected) as well as plain fine-tuning.

A reply that called tools is corrected the same way, with the call it should have made
(the right tool, the right arguments): the example keeps the tool definitions offered at
that turn and the corrected call in OpenAI's shape, the original calls as the rejected
side, so training and Teach's gate render the prompt as the chat did, tools included.

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
from app.chat.tool_prompt import openai_message, protocol_message, shown_reply
from app.chat.tool_steps import StepList
from app.chat.tools import Tool, ToolCall, ToolError, check_arguments, new_call_id, tools_json
from app.db import Database
from app.errors import ExitCode, HearthError


class CorrectionError(HearthError, ValueError):
    """A correction that cannot be made as asked (an empty reply, a user message, a call
    of a tool that was not offered or with arguments that do not fit its schema)."""

    exit_code = ExitCode.BAD_INPUT


@dataclass
class TrainingExample:
    id: int
    conversation_id: int | None
    model: str | None
    messages: list[dict[str, str]]
    """Ends with the corrected assistant reply; the protocol's shape (a message's calls
    as JSON text, :mod:`app.chat.tool_prompt`), OpenAI's lists in the database."""
    rejected: str
    created_at: str
    updated_at: str
    tools: str = ""
    """The tool definitions offered at that turn (OpenAI's ``tools`` list as JSON text,
    as :func:`app.chat.tools.tools_json` writes it); "" where none were."""
    rejected_calls: str = ""
    """The original reply's calls (OpenAI's ``tool_calls`` list as JSON text); "" none."""
    source: str = ""
    """Where a correction not made in a chat came from ("kiln.md, page 2" for a pair
    drafted from a document, :mod:`app.docs.teaching`); "" for one made in a chat."""

    @property
    def corrected(self) -> str:
        return self.messages[-1]["content"]

    @property
    def calls(self) -> str:
        """The corrected reply's calls (OpenAI's list as JSON text); "" when it has none."""
        return self.messages[-1].get("tool_calls", "")

    @property
    def shown(self) -> str:
        """The corrected reply as a person reads it, calls written out."""
        return shown_reply(self.corrected, self.calls)

    @property
    def shown_rejected(self) -> str:
        return shown_reply(self.rejected, self.rejected_calls)

    @property
    def prompt(self) -> list[dict[str, str]]:
        return self.messages[:-1]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class CorrectionStore:
    def __init__(self, conn: Database) -> None:
        self.conn = conn

    def add_from_conversation(self, store: ConversationStore, message_id: int,
                              corrected: str, calls: builtins.list[ToolCall] | None = None,
                              tools: builtins.list[Tool] | None = None) -> TrainingExample:
        """Save the conversation up to assistant message ``message_id``, corrected.

        ``calls``: the calls the reply should have made instead (or beside its words);
        ``tools``: the definitions offered at that turn, kept with the example so that it
        trains and is checked with the prompt the chat wrote. A call must name one of them
        and its arguments fit that tool's schema (:func:`checked_calls`)."""
        checked = checked_calls(calls or [], tools or [])
        if not corrected.strip() and not checked:
            raise CorrectionError("the corrected reply is empty")
        row = self.conn.execute("SELECT conversation_id, position, role, content, tool_steps"
                                " FROM messages WHERE id = ?", (message_id,)).fetchone()
        if row is None or row["role"] != "assistant":
            raise CorrectionError("only an assistant reply can be corrected")
        conversation = store.get(row["conversation_id"])
        # By position, not by slicing: the prompt leaves empty replies (one cancelled
        # before its first token) out, so counting entries would reach past this reply.
        history = store.prompt_messages(conversation.id, before=row["position"])
        reply = {"role": "assistant", "content": corrected}
        if checked:
            reply["tool_calls"] = json.dumps([c.to_openai() for c in checked],
                                             ensure_ascii=False)
        original = [s.call.to_openai() for s in StepList.loads(row["tool_steps"]).steps]
        now = _now()
        cur = self.conn.execute(
            "INSERT INTO training_examples (conversation_id, model, messages, rejected,"
            " created_at, updated_at, tools, rejected_calls) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (conversation.id, conversation.model, _stored([*history, reply]), row["content"],
             now, now, tools_json(tools) if tools else "",
             json.dumps(original, ensure_ascii=False) if original else ""))
        return self.get(cur.inserted_id)

    def add_pair(self, model: str, question: str, answer: str, source: str
                 ) -> TrainingExample:
        """A question and the reply it should get, made outside a chat (drafted from a
        document): no conversation and nothing rejected, taught like any correction."""
        if not question.strip() or not answer.strip():
            raise CorrectionError("a question and its answer are both needed")
        now = _now()
        cur = self.conn.execute(
            "INSERT INTO training_examples (conversation_id, model, messages, rejected,"
            " created_at, updated_at, source) VALUES (NULL, ?, ?, '', ?, ?, ?)",
            (model, _stored([{"role": "user", "content": question},
                             {"role": "assistant", "content": answer}]), now, now, source))
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
        """New words for the corrected reply; its calls, if it makes any, stay."""
        example = self.get(example_id)
        if not corrected.strip() and not example.calls:
            raise CorrectionError("the corrected reply is empty")
        messages = [*example.prompt, {**example.messages[-1], "content": corrected}]
        self.conn.execute("UPDATE training_examples SET messages = ?, updated_at = ?"
                          " WHERE id = ?", (_stored(messages), _now(), example_id))
        return self.get(example_id)

    def delete(self, example_id: int) -> None:
        self.conn.execute("DELETE FROM training_examples WHERE id = ?", (example_id,))

    def rows(self, preference: bool = False) -> builtins.list[dict[str, Any]]:
        """The examples as dataset records. Plain: OpenAI chat format
        (``{"messages": [...]}``, with ``"tools"`` where tools were offered: the shape
        chat templates and OpenAI's fine-tuning take), which the fine-tuning engine reads.
        Preference: ``{"prompt", "chosen", "rejected"}`` for DPO-style tuning (a
        correction of calls: the replies as assistant messages, and its ``tools``)."""
        return [_row(ex, preference) for ex in self.list()]

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
                               model=row["model"],
                               messages=[protocol_message(m) for m in json.loads(
                                   row["messages"])],
                               rejected=row["rejected"], created_at=row["created_at"],
                               updated_at=row["updated_at"], tools=row["tools"],
                               rejected_calls=row["rejected_calls"], source=row["source"])


def checked_calls(calls: list[ToolCall], tools: list[Tool]) -> list[ToolCall]:
    """The calls with their arguments checked against the schemas of ``tools`` (the
    definitions offered at that turn); CorrectionError says which call is wrong, how."""
    by_name = {t.name: t for t in tools}
    out = []
    for call in calls:
        tool = by_name.get(call.name)
        if tool is None:
            offered = ", ".join(by_name) or "none were offered"
            raise CorrectionError(f"{call.name!r} is not one of the tools offered at that "
                                  f"turn ({offered})")
        try:
            arguments = check_arguments(tool, call.arguments)
        except ToolError as exc:
            raise CorrectionError(str(exc)) from None
        out.append(ToolCall(call.id or new_call_id(), call.name, arguments))
    return out


def _stored(messages: list[dict[str, str]]) -> str:
    """Messages as the database keeps them: OpenAI's shape (calls as lists)."""
    return json.dumps([openai_message(m) for m in messages], ensure_ascii=False)


def _row(ex: TrainingExample, preference: bool) -> dict[str, Any]:
    tools = {"tools": json.loads(ex.tools)} if ex.tools else {}
    prompt = [openai_message(m) for m in ex.prompt]
    if not preference:
        return {"messages": [*prompt, openai_message(ex.messages[-1])], **tools}
    if not (ex.calls or ex.rejected_calls):
        return {"prompt": prompt, "chosen": ex.corrected, "rejected": ex.rejected, **tools}
    rejected = {"role": "assistant", "content": ex.rejected, "tool_calls": ex.rejected_calls}
    return {"prompt": prompt, "chosen": [openai_message(ex.messages[-1])],
            "rejected": [openai_message(rejected)], **tools}


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
