"""Importing conversations from other chat tools, and from Hearth's own export.

Read formats, decided by the file's content rather than its name:

* JSONL, one conversation per line: OpenAI ``{"messages": [{"role", "content"}]}`` or
  ShareGPT ``{"conversations": [{"from": "human"|"gpt"|"system", "value"}]}``;
* ChatGPT's ``conversations.json`` (a list of ``{"title", "mapping", "current_node"}``:
  the branch that was shown is followed from ``current_node`` up);
* Open WebUI's export (a list of ``{"chat": {"title", "history": {"messages",
  "currentId"}}}``, or ``"messages"`` when there is no history);
* Hearth's own JSON export (an OpenAI request body ``{"model", "messages"}``), or a list
  of such bodies.

Everything in the file is a stranger's text: it is stored as text and shown as text
(the chat renders replies through ``ui.untrusted``). Each problem names its line (JSONL)
or conversation number (JSON); good conversations are imported even when some are not.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.chat.conversations import ConversationStore
from app.chat.import_source import (
    MAX_FILE_BYTES,
    ConversationImportError,
    Record,
    open_regular,
    records,
)
from app.chat.tool_steps import StepState, ToolStep
from app.chat.tools import ToolCall, new_call_id
from app.chat.turn import title_from

__all__ = ["MAX_FILE_BYTES", "ConversationImportError", "ImportReport", "ImportResult",
           "import_file", "import_into", "read_conversations"]

MAX_MESSAGES = 10_000
MAX_PROBLEMS = 1_000
"""Problems kept word for word; beyond, only counted (each is a sentence in memory)."""
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
         "bot": "assistant", "model": "assistant", "system": "system"}
# Valid JSON may hold a lone surrogate (a "\ud800" escape); SQLite cannot store one.
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class Imported:
    title: str
    messages: list[tuple[str, str]]  # (role, text); "system" only first
    model: str | None = None
    source: str = ""
    """The tool the file came from ("ChatGPT", "Open WebUI", "ShareGPT"; "" unknown)."""
    reply_models: dict[int, str] = field(default_factory=dict)
    """The model the file names for a reply, by its index in ``messages``."""
    tool_steps: dict[int, list[ToolStep]] = field(default_factory=dict)
    """The calls a reply made (OpenAI's ``tool_calls``) with their results, by index."""

    def reply_stats(self, index: int) -> dict[str, str] | None:
        """What an imported reply is stored with, so the chat labels it as imported
        (from where, by which model the file names) instead of as the local model's."""
        if self.messages[index][0] != "assistant":
            return None
        named = self.reply_models.get(index) or self.model
        return {"imported_from": self.source, **({"imported_model": named} if named else {})}


@dataclass
class ImportResult:
    conversations: list[Imported] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    format: str = ""
    more_problems: int = 0
    """Problems beyond MAX_PROBLEMS, counted only."""

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)
        else:
            self.more_problems += 1


@dataclass
class ImportReport(ImportResult):
    """What :func:`import_file` stored: exactly the conversations in ``ids``."""

    ids: list[int] = field(default_factory=list)
    stopped: str | None = None
    """Why the import ended before the end of the file (what came before is stored)."""

    def skipped(self) -> int:
        return len(self.problems) + self.more_problems


def read_conversations(path: str | os.PathLike[str]) -> ImportResult:
    """Parse ``path``; raises :class:`ConversationImportError` only when nothing in it is
    usable (or the file is not one to read at all)."""
    result = ImportResult()
    _read(Path(path), result, result.conversations.append)
    if not result.conversations:
        _nothing(Path(path).name, result)
    return result


def import_into(store: ConversationStore, result: ImportResult) -> list[int]:
    """Store each imported conversation, each whole or not at all; returns their ids."""
    return [_store(store, imported) for imported in result.conversations]


def import_file(store: ConversationStore, path: str | os.PathLike[str]) -> ImportReport:
    """Read ``path`` and store its conversations as they are read (memory holds one at a
    time). Raises :class:`ConversationImportError` only when nothing was stored; else the
    report says what was, what was skipped, and why the import stopped early if it did.
    """
    source, report = Path(path), ImportReport()

    def keep(imported: Imported) -> None:
        try:
            report.ids.append(_store(store, imported))
        except (sqlite3.Error, ValueError) as exc:
            raise ConversationImportError(f"storing {imported.title[:60]!r} failed "
                                          f"({exc}); the import stopped there") from exc

    try:
        _read(source, report, keep)
    except Exception as exc:  # whatever it was, what is stored stays stored and is told
        if not report.ids:
            raise
        report.stopped = str(exc) or type(exc).__name__
    if not report.ids:
        _nothing(source.name, report)
    return report


def _read(source: Path, result: ImportResult, keep: Callable[[Imported], None]) -> None:
    with open_regular(source) as fh:
        result.format, entries = records(fh, source.name)
        for record in entries:
            _add(result, record, keep)


def _nothing(name: str, result: ImportResult) -> None:
    reasons = "; ".join(result.problems[:3]) or "it holds no conversations"
    raise ConversationImportError(f"nothing to import from {name}: {reasons}")


def _store(store: ConversationStore, imported: Imported) -> int:
    messages = imported.messages
    system = messages[0][1] if messages[0][0] == "system" else ""
    first = 1 if system else 0
    return store.add_whole(imported.title, imported.model, system, messages[first:],
                           [imported.reply_stats(i) for i in range(first, len(messages))],
                           {i - first: s for i, s in imported.tool_steps.items()})


# ----------------------------------------------------------------- formats


def _add(result: ImportResult, record: Record, keep: Callable[[Imported], None]) -> None:
    if record.problem is not None:
        result.problem(f"{record.where}: {record.problem}")
        return
    try:
        imported = _conversation(record.value)
    except ValueError as exc:
        result.problem(f"{record.where}: {exc}")
        return
    keep(imported)


def _conversation(record: Any) -> Imported:
    """One conversation from any of the formats, or ValueError saying what is wrong."""
    if not isinstance(record, dict):
        raise ValueError("expected an object")
    if isinstance(record.get("chat"), dict):  # Open WebUI
        chat = record["chat"]
        history = chat.get("history")
        if isinstance(history, dict) and isinstance(history.get("messages"), dict):
            turns = _follow(history["messages"], history.get("currentId"),
                            parent_key="parentId", message=lambda node: node)
        else:
            turns = chat.get("messages")
        return _build(turns, record.get("title") or chat.get("title"), None, "Open WebUI")
    if isinstance(record.get("mapping"), dict):  # ChatGPT
        turns = _follow(record["mapping"], record.get("current_node"), parent_key="parent",
                        message=lambda node: node.get("message"))
        return _build(turns, record.get("title"), None, "ChatGPT",
                      _named(record.get("default_model_slug")))
    if "conversations" in record:  # ShareGPT
        return _build(record["conversations"], record.get("title"), None, "ShareGPT")
    if "messages" in record:  # OpenAI, Hearth's export
        model = record.get("model")
        return _build(record["messages"], record.get("title"),
                      model if isinstance(model, str) and model else None)
    raise ValueError("no 'messages', 'conversations', 'mapping' or 'chat' in it")


def _follow(nodes: dict[str, Any], leaf: Any, parent_key: str, message: Any) -> list[Any]:
    """The branch that ends at ``leaf``, first message first (a tree's shown branch)."""
    if leaf not in nodes:  # no current node: the newest leaf
        leaf = next(reversed(nodes), None)
    path, seen = [], set()
    while isinstance(leaf, str) and leaf in nodes and leaf not in seen:
        seen.add(leaf)
        node = nodes[leaf]
        if not isinstance(node, dict):
            raise ValueError(f"node {leaf[:40]!r} is not an object")
        found = message(node)
        if found is not None:
            path.append(found)
        leaf = node.get(parent_key)
    return path[::-1]


def _text(turn: dict[str, Any]) -> str | None:
    """A turn's text in any of the formats (None: not a text turn, e.g. a tool call)."""
    content = turn.get("content", turn.get("value"))
    if isinstance(content, dict):  # ChatGPT: {"content_type", "parts"}
        if content.get("content_type") not in (None, "text", "multimodal_text"):
            return None
        content = content.get("parts")
    if isinstance(content, list):  # parts, or OpenAI's [{"type": "text", "text"}]
        pieces = [p if isinstance(p, str) else str(p["text"]) for p in content
                  if isinstance(p, str) or (isinstance(p, dict)
                                            and isinstance(p.get("text"), str))]
        return "\n".join(pieces) if pieces else None
    return content if isinstance(content, str) else None


def _build(turns: Any, title: Any, model: str | None, source: str = "",
           reply_model: str | None = None) -> Imported:
    if not isinstance(turns, list) or not turns:
        raise ValueError("it has no messages")
    if len(turns) > MAX_MESSAGES:
        raise ValueError(f"more than {MAX_MESSAGES:,} messages")
    messages: list[tuple[str, str]] = []
    reply_models: dict[int, str] = {}
    steps: dict[int, list[ToolStep]] = {}
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise ValueError(f"message {number} is not an object")
        if _tool_turn(turn, messages, steps):
            continue
        author = turn.get("author")
        raw_role = turn.get("role", turn.get("from"))
        if isinstance(author, dict):
            raw_role = author.get("role")
        role = ROLES.get(str(raw_role).lower()) if raw_role is not None else None
        if role is None:
            if raw_role in ("tool", "function"):
                continue  # tool output is not a chat turn Hearth shows
            raise ValueError(f"message {number} has role {str(raw_role)[:20]!r}; "
                             "expected user, assistant or system")
        text = _text(turn)
        if text is None:
            continue
        if role == "system" and (messages or not text.strip()):
            continue  # a system prompt is kept only at the start
        if role == "assistant" and (named := _reply_model(turn) or reply_model):
            reply_models[len(messages)] = named
        messages.append((role, _storable(text)))
    if not any(role != "system" for role, _ in messages):
        raise ValueError("it has no user or assistant text")
    first_user = next((text for role, text in messages if role == "user"), "")
    name = title.strip()[:200] if isinstance(title, str) and title.strip() else \
        title_from(first_user)
    return Imported(_storable(name), messages, model and _storable(model), source,
                    reply_models, steps)


def _tool_turn(turn: dict[str, Any], messages: list[tuple[str, str]],
               steps: dict[int, list[ToolStep]]) -> bool:
    """Fold OpenAI's tool turns into the conversation: an assistant message with
    ``tool_calls`` becomes a reply with steps, and a ``tool`` message the result of the
    step it answers (one that answers no call is dropped). True when ``turn`` was one."""
    if turn.get("role") == "tool":
        ident = turn.get("tool_call_id")
        last = steps.get(len(messages) - 1, [])
        for step in last:
            if step.call.id == ident:
                step.state, step.result = StepState.RAN, _storable(_text(turn) or "")
        return True
    calls = turn.get("tool_calls")
    if turn.get("role") != "assistant" or not isinstance(calls, list) or not calls:
        return False
    made = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            arguments = function.get("arguments", "{}")
            made.append(ToolStep(ToolCall(
                _storable(str(call.get("id") or new_call_id()))[:100],
                _storable(function["name"])[:64],
                _storable(arguments if isinstance(arguments, str) else json.dumps(arguments))),
                StepState.PENDING))
    if not made:
        return False
    steps[len(messages)] = made
    messages.append(("assistant", _storable(_text(turn) or "")))
    return True


def _reply_model(turn: dict[str, Any]) -> str | None:
    """The model a reply names: ChatGPT's ``metadata.model_slug``, Open WebUI's ``model``."""
    metadata = turn.get("metadata")
    slug = metadata.get("model_slug") if isinstance(metadata, dict) else None
    return _named(slug) or _named(turn.get("model"))


def _named(value: Any) -> str | None:
    """A model name from the file: a stranger's text, kept short and storable."""
    if not isinstance(value, str) or not value.strip():
        return None
    return _storable(" ".join(value.split())[:120])


def _storable(text: str) -> str:
    """``text`` with any lone surrogate replaced (U+FFFD), as SQLite can store it."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text
