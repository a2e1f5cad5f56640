"""One record of a fine-tuning dataset, in each accepted format, checked and normalised.

:mod:`app.finetune.datasets` reads a file and finds its records; this module turns each
record (an OpenAI chat, a ShareGPT conversation, an Alpaca instruction or plain text)
into an :class:`Example`, or says in words what is wrong with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.chat.tools import (
    Tool,
    ToolCall,
    ToolError,
    json_object,
    new_call_id,
    parse_tools,
    tools_json,
)

ROLES = ("system", "user", "assistant", "tool")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant",
                  "assistant": "assistant", "chatgpt": "assistant", "model": "assistant",
                  "bot": "assistant", "system": "system"}
MAX_MESSAGE_CHARS = 1_000_000


@dataclass
class Example:
    """One training record, normalised: a chat (``messages``) or raw ``text``."""

    line: int
    """Line of the source file where the record starts (1-based), for messages."""
    messages: list[dict[str, str]] | None = None
    """The protocol's shape (:mod:`app.chat.tool_prompt`): an assistant's calls as JSON
    text under ``tool_calls``, a tool's result as a ``tool`` message."""
    text: str | None = None
    tools: str = ""
    """The tools offered to the chat (OpenAI's ``tools`` list as JSON text); "" none. The
    record renders with them as the chat renders a prompt with tools."""

    def to_json(self) -> dict[str, Any]:
        if self.messages is not None:
            tools = {"tools": json.loads(self.tools)} if self.tools else {}
            return {"messages": self.messages, "line": self.line, **tools}
        return {"text": self.text, "line": self.line}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Example:
        tools = data.get("tools")
        return cls(line=int(data.get("line", 0)), messages=data.get("messages"),
                   text=data.get("text"),
                   tools=json.dumps(tools, ensure_ascii=False) if tools else "")

    @property
    def n_chars(self) -> int:
        if self.messages is not None:
            return sum(len(m["content"]) + len(m.get("tool_calls", ""))
                       for m in self.messages) + len(self.tools)
        return len(self.text or "")

    def key(self) -> str:
        """Identity for duplicate detection (the content, not the line)."""
        payload = self.messages if self.messages is not None else self.text
        return json.dumps([payload, self.tools], sort_keys=True, ensure_ascii=False)


class RecordProblem(ValueError):
    """One record's problem, phrased for a person (the caller adds the line)."""


def check_size(example: Example) -> Example:
    texts = ([m["content"] for m in example.messages] if example.messages is not None
             else [example.text or ""])
    for i, text in enumerate(texts, start=1):
        if len(text) > MAX_MESSAGE_CHARS:
            what = f"message {i}" if example.messages is not None else "the text"
            raise RecordProblem(f"{what} is {len(text):,} characters long; the limit is "
                       f"{MAX_MESSAGE_CHARS:,}")
    return example


def detect_format(records: list[tuple[int, Any]]) -> str | None:
    for _, obj in records:
        if not isinstance(obj, dict):
            continue
        if "messages" in obj:
            return "openai"
        if "conversations" in obj:
            return "sharegpt"
        if "instruction" in obj or "output" in obj:
            return "alpaca"
        if "text" in obj:
            return "text"
        return "openai"  # the most common; its parser names what is missing
    return None


def _need_dict(obj: Any) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise RecordProblem(f"expected a JSON object, found {type(obj).__name__}")
    return obj


def _string(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise RecordProblem(f"{what} must be text, found {type(value).__name__}")
    return value


def _check_chat(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    if not any(m["role"] == "assistant" for m in messages):
        raise RecordProblem("no assistant message: there is nothing to learn from this record")
    for i, m in enumerate(messages, start=1):
        if m["role"] == "system" and i != 1:
            raise RecordProblem(f"message {i} is a system message; only the first may be")
    return messages


def _openai(obj: Any, line: int) -> Example:
    obj = _need_dict(obj)
    if "messages" not in obj:
        raise RecordProblem("'messages' is missing")
    raw = obj["messages"]
    if not isinstance(raw, list) or not raw:
        raise RecordProblem("'messages' must be a non-empty list")
    tools = _tools(obj.get("tools"))
    messages = []
    for i, m in enumerate(raw, start=1):
        if not isinstance(m, dict):
            raise RecordProblem(f"message {i} is not an object")
        if "role" not in m:
            raise RecordProblem(f"message {i} has no 'role'")
        role = m["role"]
        if role not in ROLES:
            raise RecordProblem(f"message {i} has role {role!r}; use system, user, "
                                "assistant or tool")
        calls = _calls(m.get("tool_calls"), tools, i) if role == "assistant" else ""
        if "content" not in m and not calls:
            raise RecordProblem(f"message {i} has no 'content'")
        content = _string(m.get("content") or "", f"the content of message {i}")
        if not content.strip() and role == "assistant" and not calls:
            raise RecordProblem(f"message {i} (assistant) is empty")
        message = {"role": role, "content": content}
        if calls:
            message["tool_calls"] = calls
        if role == "tool":
            message.update({k: _string(m[k], f"the {k} of message {i}")
                            for k in ("tool_call_id", "name") if k in m})
        messages.append(message)
    return Example(line=line, messages=_check_chat(messages),
                   tools=tools_json(tools) if tools else "")


def _tools(raw: Any) -> list[Tool]:
    """A record's ``tools``: OpenAI's definitions, checked as the server checks them."""
    if raw is None:
        return []
    try:
        return parse_tools(raw)
    except ToolError as exc:
        raise RecordProblem(str(exc)) from None


def _calls(raw: Any, tools: list[Tool], i: int) -> str:
    """An assistant message's ``tool_calls`` (OpenAI's list) as the protocol's JSON text;
    each names a tool of the record's ``tools`` (when it has some) with JSON arguments."""
    if not raw:
        return ""
    if not isinstance(raw, list):
        raise RecordProblem(f"the tool_calls of message {i} must be a list")
    offered = {t.name for t in tools}
    calls = []
    for call in raw:
        function = call.get("function") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(function, dict) or not isinstance(name, str):
            raise RecordProblem(f"a call of message {i} has no function name")
        if offered and name not in offered:
            raise RecordProblem(f"message {i} calls {name!r}, which is not in 'tools'")
        arguments = function.get("arguments", "{}")
        value = json_object(arguments) if isinstance(arguments, str) else arguments
        if not isinstance(value, dict):
            raise RecordProblem(f"the arguments of {name!r} in message {i} are not a JSON "
                                "object")
        calls.append(ToolCall(str(call.get("id") or new_call_id()), name,
                              json.dumps(value, ensure_ascii=False)).to_openai())
    return json.dumps(calls, ensure_ascii=False)


def _sharegpt(obj: Any, line: int) -> Example:
    obj = _need_dict(obj)
    if "conversations" not in obj:
        raise RecordProblem("'conversations' is missing")
    raw = obj["conversations"]
    if not isinstance(raw, list) or not raw:
        raise RecordProblem("'conversations' must be a non-empty list")
    messages = []
    for i, m in enumerate(raw, start=1):
        if not isinstance(m, dict):
            raise RecordProblem(f"turn {i} is not an object")
        if "from" not in m:
            raise RecordProblem(f"turn {i} has no 'from'")
        if "value" not in m:
            raise RecordProblem(f"turn {i} has no 'value'")
        who = str(m["from"]).lower()
        if who not in SHAREGPT_ROLES:
            raise RecordProblem(f"turn {i} is from {m['from']!r}; use human, gpt or system")
        content = _string(m["value"], f"the value of turn {i}")
        messages.append({"role": SHAREGPT_ROLES[who], "content": content})
    return Example(line=line, messages=_check_chat(messages))


def _alpaca(obj: Any, line: int) -> Example:
    obj = _need_dict(obj)
    for key in ("instruction", "output"):
        if key not in obj:
            raise RecordProblem(f"'{key}' is missing")
    instruction = _string(obj["instruction"], "'instruction'")
    extra = _string(obj.get("input") or "", "'input'")
    output = _string(obj["output"], "'output'")
    if not instruction.strip():
        raise RecordProblem("'instruction' is empty")
    if not output.strip():
        raise RecordProblem("'output' is empty")
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    messages = []
    if isinstance(obj.get("system"), str) and obj["system"].strip():
        messages.append({"role": "system", "content": obj["system"]})
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": output}]
    return Example(line=line, messages=messages)


def _text_record(obj: Any, line: int) -> Example:
    obj = _need_dict(obj)
    if "text" not in obj:
        raise RecordProblem("'text' is missing")
    text = _string(obj["text"], "'text'")
    if not text.strip():
        raise RecordProblem("'text' is empty")
    return Example(line=line, text=text)


PARSERS = {"openai": _openai, "sharegpt": _sharegpt, "alpaca": _alpaca,
            "text": _text_record}


def plain_text_examples(text: str) -> list[Example]:
    """Paragraphs (separated by blank lines) of a plain text file, with their lines."""
    examples: list[Example] = []
    current: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            if not current:
                start = number
            current.append(line)
        elif current:
            examples.append(Example(line=start, text="\n".join(current)))
            current = []
    if current:
        examples.append(Example(line=start, text="\n".join(current)))
    return examples
