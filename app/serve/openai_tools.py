"""OpenAI's tool calling on the local server: the request's ``tools``, ``tool_choice`` and
``parallel_tool_calls``, tool turns in ``messages``, and replies that are calls.

The server never runs a tool: it tells the model what it may call and hands the calls
back to the client (``finish_reason: "tool_calls"``), which runs them and sends the
results as ``tool`` messages. The shapes are OpenAI's, so the official ``openai``
client and agent libraries work unchanged:

- ``tool_choice`` ``"required"`` or a named function holds the reply to a valid call by
  grammar (:func:`app.chat.tools.call_schema`); ``"auto"`` lets the model choose, holds
  a call it begins to the tools' schemas (:func:`app.chat.tools.auto_call_schema`,
  unless the client's own ``response_format`` holds the reply) and reads a call if it
  wrote one; ``"none"`` offers no tools (earlier calls and results in the history are
  still shown to the model).
- Streamed, a reply that could still become a call is held back until it is clear
  (:class:`CallFilter`); plain text streams as it comes. A call goes out as
  ``delta.tool_calls``: first the id and the name, then the arguments.
- A ``tool`` message must name the call it answers (``tool_call_id``) among the calls
  earlier in the conversation: a result that answers nothing is a 400, not a guess.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from typing import Any

from app.chat.tools import (
    CallReading,
    Tool,
    ToolCall,
    ToolChoice,
    ToolError,
    auto_call_schema,
    call_schema,
    could_become_call,
    looks_like_call,
    parse_choice,
    parse_tools,
    read_calls,
    tools_json,
)
from app.inference import protocol as p
from app.serve.errors import ServeError

log = logging.getLogger("hearth.serve")


@dataclass(frozen=True)
class ToolRequest:
    tools: list[Tool] = field(default_factory=list)
    choice: ToolChoice = ToolChoice("none")
    parallel: bool = True

    @property
    def active(self) -> bool:
        """Whether the reply may be a call (tools offered, and not ``none``)."""
        return bool(self.tools) and self.choice.mode != "none"

    def wire(self) -> str:
        """The definitions the worker renders into the prompt (none for ``none``)."""
        if not self.active:
            return ""
        return tools_json(self.tools)

    def sampling(self, sampling: p.SamplingParams) -> p.SamplingParams:
        """A forced call is held to its schema; that leaves no room for a client's own.
        A call the model begins by itself is held too, unless the client's format holds
        the whole reply."""
        if not self.active:
            return sampling
        if not self.choice.forced:
            if sampling.grammar or sampling.json_schema:
                return sampling
            schema = auto_call_schema(self.tools, self.parallel)
            return replace(sampling, call_schema=schema)
        if sampling.grammar or sampling.json_schema:
            raise ServeError(400, "'response_format' (or 'grammar') cannot be combined with "
                             "a required tool call: the call has its own format")
        try:
            schema = call_schema(self.tools, self.choice, self.parallel)
        except ToolError as exc:
            raise ServeError(400, str(exc)) from None
        return replace(sampling, json_schema=schema)

    def read(self, text: str) -> CallReading:
        if not self.active:
            return CallReading([])
        reading = read_calls(text, self.tools)
        if reading.problem:
            log.info("a reply that looked like a tool call is returned as text: %s",
                     reading.problem)
        if not self.parallel and len(reading.calls) > 1:
            return CallReading(reading.calls[:1])
        return reading


def parse_request(body: dict[str, Any]) -> ToolRequest:
    if body.get("functions") is not None or body.get("function_call") is not None:
        raise ServeError(400, "'functions' and 'function_call' are OpenAI's old form; "
                         "send 'tools' and 'tool_choice'")
    parallel = body.get("parallel_tool_calls", True)
    if not isinstance(parallel, bool):
        raise ServeError(400, "'parallel_tool_calls' must be true or false")
    try:
        tools = parse_tools(body["tools"]) if body.get("tools") is not None else []
        choice = parse_choice(body.get("tool_choice"), tools)
    except ToolError as exc:
        raise ServeError(400, str(exc)) from None
    return ToolRequest(tools, choice, parallel)


def message_fields(message: dict[str, Any], where: str, call_ids: set[str]
                   ) -> dict[str, str]:
    """A message's tool parts as the protocol carries them (text), checked: an assistant's
    ``tool_calls`` (their ids are remembered in ``call_ids``) or a ``tool`` result's
    ``tool_call_id``."""
    role = message.get("role")
    if role == "tool":
        ident = message.get("tool_call_id")
        if not isinstance(ident, str) or not ident:
            raise ServeError(400, f"{where}: a tool message needs 'tool_call_id', the id of "
                             "the call it answers")
        if ident not in call_ids:
            raise ServeError(400, f"{where}: 'tool_call_id' {ident!r} answers no call made "
                             "earlier in 'messages'")
        return {"tool_call_id": ident}
    calls = message.get("tool_calls")
    if role != "assistant" or calls is None:
        return {}
    if not isinstance(calls, list):
        raise ServeError(400, f"{where}.tool_calls must be a list")
    kept = []
    for j, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        ident = call.get("id") if isinstance(call, dict) else None
        name = function.get("name") if isinstance(function, dict) else None
        arguments = function.get("arguments", "{}") if isinstance(function, dict) else None
        if not (isinstance(ident, str) and ident and isinstance(name, str)
                and isinstance(arguments, str)):
            raise ServeError(400, f"{where}.tool_calls[{j}] must have an 'id' and a "
                             "'function' with a 'name' and 'arguments' (JSON text)")
        call_ids.add(ident)
        kept.append(ToolCall(ident, name, arguments).to_openai())
    return {"tool_calls": json.dumps(kept, ensure_ascii=False)} if kept else {}


def call_deltas(calls: list[ToolCall]) -> list[dict[str, Any]]:
    """The ``delta``\\ s of streamed calls: each call's id and name, then its arguments."""
    deltas: list[dict[str, Any]] = []
    for i, call in enumerate(calls):
        deltas.append({"tool_calls": [{"index": i, "id": call.id, "type": "function",
                                       "function": {"name": call.name, "arguments": ""}}]})
        deltas.append({"tool_calls": [{"index": i,
                                       "function": {"arguments": call.arguments}}]})
    return deltas


class CallFilter:
    """Streams a reply's text, except what may still turn out to be a call: that is held
    until the reply ends, then read (:meth:`finish`)."""

    def __init__(self, request: ToolRequest) -> None:
        self.request = request
        self.held = ""
        self.text_only = not request.active

    def feed(self, text: str) -> str:
        """The text to send now."""
        if self.text_only:
            return text
        self.held += text
        if self.request.choice.forced or looks_like_call(self.held) \
                or could_become_call(self.held):
            return ""
        self.text_only = True
        out, self.held = self.held, ""
        return out

    def finish(self) -> tuple[str, list[ToolCall]]:
        """What was held: as calls, or (not a usable call) as text."""
        held, self.held = self.held, ""
        if not held:
            return "", []
        reading = self.request.read(held)
        return ("", reading.calls) if reading.calls else (held, [])
