"""Tools and tool turns in a prompt: through the model's own template, or Hearth's fallback.

A model learned to call tools in the layout its chat template writes: Qwen 2.5/3,
Llama 3.x, SmolLM3, Mistral and Phi-4-mini templates take a ``tools`` variable and
render assistant ``tool_calls`` and ``tool`` turns themselves. For those, the messages
go in as the template expects them (arguments as objects, the call ids kept).

A template without a ``tools`` variable (SmolLM2, Gemma 3, Hearth's family templates)
gets the fallback: the definitions and the call format are written into the system
message, a call the model made earlier is written back as ``<tool_call>{…}</tool_call>``
text, and a tool's result becomes a user turn ``<tool_response>…</tool_response>``
(consecutive results one turn, for templates that insist on alternating roles). All of
that is message *content*, so the worker's content guard keeps any control-token text in
a definition or a result from being read as a marker.

On the protocol a message stays ``dict[str, str]``: an assistant's calls travel as
``tool_calls`` (OpenAI's list, as JSON text), a result carries ``tool_call_id`` and
``name``; :func:`for_template` turns them into what the template takes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from jinja2 import Environment, TemplateSyntaxError, meta

from app.chat.tools import Tool, shown_call, tool_from

FALLBACK_INSTRUCTIONS = (
    "You can call tools. To call one, answer with only this, and nothing else:\n"
    "<tool_call>\n{\"name\": \"<tool name>\", \"arguments\": {<the arguments as JSON>}}\n"
    "</tool_call>\n"
    "The result comes back in a <tool_response> message; then answer the user.\n"
    "The tools:")


@lru_cache(maxsize=32)
def supports_tools(template_text: str) -> bool:
    """Whether the template reads a ``tools`` variable (parsing only: nothing runs)."""
    try:
        names = meta.find_undeclared_variables(Environment().parse(template_text))
    except (TemplateSyntaxError, RecursionError):
        return False
    return "tools" in names


def shape(messages: list[dict[str, str]], tools: str, template_text: str,
          defuse: Callable[[Any], Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """What the inference worker renders: :func:`for_template` of the protocol's messages
    and ``tools`` (OpenAI's definitions as JSON text, checked again here). Contents are
    guarded as content when rendered; the rest, which the template writes itself (the
    definitions, a call's arguments, ids), goes through ``defuse``, which breaks any
    control token's text in it."""
    offered = [tool_from(t["function"]) for t in json.loads(tools)] if tools else []
    shaped, variable = for_template(messages, offered, supports_tools(template_text))
    return ([{k: v if k == "content" else defuse(v) for k, v in m.items()} for m in shaped],
            defuse(variable))


def for_template(messages: list[dict[str, str]], tools: list[Tool], native: bool
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
    """The messages (and the ``tools`` variable, or None) to render the template with.

    ``tools`` are those the model may call now (none for ``tool_choice: "none"``); the
    history's calls and results are rendered either way.
    """
    if native:
        return [_native(m) for m in messages], [t.to_openai() for t in tools] or None
    out: list[dict[str, Any]] = []
    for message in messages:
        converted = _fallback(message)
        if (message.get("role") == "tool" and out and out[-1].get("from_tool")):
            out[-1]["content"] += "\n" + converted["content"]
            continue
        out.append(converted)
    if tools:
        _add_instructions(out, tools)
    return [{k: v for k, v in m.items() if k != "from_tool"} for m in out], None


def calls_of(message: dict[str, str]) -> list[dict[str, Any]]:
    """An assistant message's calls, OpenAI's shape (``[]`` when it made none)."""
    text = message.get("tool_calls") or ""
    calls = json.loads(text) if text else []
    return calls if isinstance(calls, list) else []


def shown_reply(content: str, calls: str) -> str:
    """A reply as a person reads it in a list: its words, then each call written
    ``get_time(timezone="Asia/Tokyo")`` (``calls``: OpenAI's list as JSON text, or "")."""
    written = [shown_call(str(c["function"].get("name")),
                          json.dumps(_arguments(c["function"].get("arguments")),
                                     ensure_ascii=False))
               for c in calls_of({"tool_calls": calls})
               if isinstance(c, dict) and isinstance(c.get("function"), dict)]
    return "\n".join([content.strip()] * bool(content.strip()) + written)


def openai_message(message: dict[str, str]) -> dict[str, Any]:
    """A protocol message as files in OpenAI's format hold it (a dataset's records, the
    corrections' rows): an assistant's calls as a list, not JSON text."""
    out: dict[str, Any] = dict(message)
    if message.get("tool_calls"):
        out["tool_calls"] = calls_of(message)
    else:
        out.pop("tool_calls", None)
    return out


def protocol_message(message: dict[str, Any]) -> dict[str, str]:
    """The other way (:func:`openai_message`): a message whose calls are a list (or
    already JSON text) as the protocol carries it, every value text."""
    out = {k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
           for k, v in message.items() if v is not None and k != "tool_calls"}
    calls = message.get("tool_calls")
    if calls:
        out["tool_calls"] = calls if isinstance(calls, str) else json.dumps(
            calls, ensure_ascii=False)
    out.setdefault("content", "")
    return out


def _native(message: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = dict(message)
    if message.get("role") == "assistant" and message.get("tool_calls"):
        out["tool_calls"] = [
            {"id": c.get("id", ""), "type": "function", "function": {
                "name": c["function"]["name"],
                "arguments": _arguments(c["function"].get("arguments"))}}
            for c in calls_of(message)]
    else:
        out.pop("tool_calls", None)
    return out


def _fallback(message: dict[str, str]) -> dict[str, Any]:
    role = message.get("role", "user")
    if role == "tool":
        result = message.get("content", "")
        return {"role": "user", "from_tool": True,
                "content": f"<tool_response>\n{result}\n</tool_response>"}
    calls = calls_of(message) if role == "assistant" else []
    if not calls:
        return {"role": role, "content": message.get("content", "")}
    written = "\n".join(
        "<tool_call>\n" + json.dumps({"name": c["function"]["name"],
                                      "arguments": _arguments(c["function"].get("arguments"))},
                                     ensure_ascii=False) + "\n</tool_call>"
        for c in calls)
    text = message.get("content", "")
    return {"role": "assistant", "content": f"{text}\n{written}" if text else written}


def _add_instructions(messages: list[dict[str, Any]], tools: list[Tool]) -> None:
    listing = "\n".join(json.dumps(t.to_openai()["function"], ensure_ascii=False)
                        for t in tools)
    text = f"{FALLBACK_INSTRUCTIONS}\n{listing}"
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{text}"
    else:
        messages.insert(0, {"role": "system", "content": text})


def _arguments(raw: Any) -> Any:
    """Arguments as an object: templates write them with ``tojson``."""
    if isinstance(raw, str):
        try:
            return json.loads(raw or "{}")
        except ValueError:
            return raw
    return raw if raw is not None else {}
