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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.chat.conversations import ConversationStore
from app.chat.turn import title_from
from app.errors import ExitCode, HearthError

MAX_FILE_BYTES = 256 << 20
MAX_MESSAGES = 10_000
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
         "bot": "assistant", "model": "assistant", "system": "system"}


class ConversationImportError(HearthError, ValueError):
    """The file cannot be read as conversations at all; the message says why."""

    exit_code = ExitCode.BAD_INPUT


@dataclass
class Imported:
    title: str
    messages: list[tuple[str, str]]  # (role, text); "system" only first
    model: str | None = None


@dataclass
class ImportResult:
    conversations: list[Imported] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    format: str = ""


def read_conversations(path: str | os.PathLike[str]) -> ImportResult:
    """Parse ``path``; raises :class:`ConversationImportError` only when nothing in it is usable."""
    source = Path(path)
    name, fail = source.name, ConversationImportError
    try:
        if source.stat().st_size > MAX_FILE_BYTES:
            raise fail(f"{name} is larger than {MAX_FILE_BYTES >> 20} MiB; split it and "
                       "import the parts")
        text = source.read_text("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"{name} is not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise fail(f"{name} cannot be read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        result = _read_jsonl(text, source.name)
    else:
        result = _read_json(data, source.name)
    if not result.conversations:
        reasons = "; ".join(result.problems[:3]) or "it holds no conversations"
        raise ConversationImportError(f"nothing to import from {source.name}: {reasons}")
    return result


def import_into(store: ConversationStore, result: ImportResult) -> list[int]:
    """Store each imported conversation; returns their ids."""
    ids = []
    for imported in result.conversations:
        system = imported.messages[0][1] if imported.messages[0][0] == "system" else ""
        conversation = store.create(title=imported.title, model=imported.model,
                                    system_prompt=system)
        for role, text in imported.messages[1 if system else 0:]:
            store.add_message(conversation.id, role, text)
        ids.append(conversation.id)
    return ids


# ----------------------------------------------------------------- formats


def _read_jsonl(text: str, name: str) -> ImportResult:
    result = ImportResult(format="JSONL")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"Line {number} of {name}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            result.problems.append(f"{where}: not JSON ({exc.msg} at column {exc.colno})")
            continue
        _add(result, record, where)
    return result


def _read_json(data: Any, name: str) -> ImportResult:
    items = data if isinstance(data, list) else [data]
    result = ImportResult(format="JSON")
    for number, item in enumerate(items, start=1):
        _add(result, item, f"Conversation {number} of {name}")
    return result


def _add(result: ImportResult, record: Any, where: str) -> None:
    try:
        imported = _conversation(record)
    except ValueError as exc:
        result.problems.append(f"{where}: {exc}")
        return
    result.conversations.append(imported)


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
        return _build(turns, record.get("title") or chat.get("title"), None)
    if isinstance(record.get("mapping"), dict):  # ChatGPT
        turns = _follow(record["mapping"], record.get("current_node"), parent_key="parent",
                        message=lambda node: node.get("message"))
        return _build(turns, record.get("title"), None)
    if "conversations" in record:  # ShareGPT
        return _build(record["conversations"], record.get("title"), None)
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
        pieces = [p if isinstance(p, str) else p.get("text") for p in content
                  if isinstance(p, str) or (isinstance(p, dict)
                                            and isinstance(p.get("text"), str))]
        return "\n".join(pieces) if pieces else None
    return content if isinstance(content, str) else None


def _build(turns: Any, title: Any, model: str | None) -> Imported:
    if not isinstance(turns, list) or not turns:
        raise ValueError("it has no messages")
    if len(turns) > MAX_MESSAGES:
        raise ValueError(f"more than {MAX_MESSAGES:,} messages")
    messages: list[tuple[str, str]] = []
    for number, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict):
            raise ValueError(f"message {number} is not an object")
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
        messages.append((role, text))
    if not any(role != "system" for role, _ in messages):
        raise ValueError("it has no user or assistant text")
    first_user = next((text for role, text in messages if role == "user"), "")
    name = title.strip()[:200] if isinstance(title, str) and title.strip() else \
        title_from(first_user)
    return Imported(name, messages, model)
