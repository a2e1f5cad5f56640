"""OpenAI's request and reply shapes, translated to and from Hearth's protocol.

Only what Hearth can honour is accepted: a field it cannot do (``n`` > 1, images) is
refused with a 400 that names it, rather than silently ignored, so a client never
believes it got what it asked for. Tool calling has its own room,
:mod:`app.serve.openai_tools`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from app.chat.tools import ToolCall
from app.inference import protocol as p
from app.inference.grammar_limits import StructureError, check_structure
from app.serve.errors import ServeError
from app.serve.openai_tools import ToolRequest, message_fields, parse_request

# Hearth's finish reasons as OpenAI names them.
FINISH = {"stop": "stop", "length": "length", "context_full": "length", "cancelled": "stop",
          "tool_calls": "tool_calls"}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
         "tool": "tool"}
# Messages in one request. The body is capped in bytes too (server.MAX_BODY), but a few
# bytes per message make thousands of them, and each costs the worker a template step
# and a tokenizer call: real clients send tens, long agent sessions hundreds.
MAX_MESSAGES = 1_000


@dataclass
class Request:
    """One completion asked for: the model's name, the prompt, and how to sample."""

    model: str
    messages: list[dict[str, str]]
    sampling: p.SamplingParams
    stream: bool
    raw: bool  # /v1/completions: the prompt as plain text, no chat template
    tools: ToolRequest = ToolRequest()


def _text(content: Any, where: str) -> str:
    """A message's content: a string, or OpenAI's list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise ServeError(400, f"{where}: only text parts are supported")
            parts.append(str(part.get("text", "")))
        return "".join(parts)
    if content is None:
        return ""
    raise ServeError(400, f"{where}: 'content' must be a string or a list of text parts")


def _messages(body: dict[str, Any]) -> list[dict[str, str]]:
    raw = body.get("messages")
    if not isinstance(raw, list) or not raw:
        raise ServeError(400, "'messages' must be a non-empty list")
    if len(raw) > MAX_MESSAGES:
        raise ServeError(400, f"'messages' holds {len(raw):,} messages; at most "
                         f"{MAX_MESSAGES:,} messages are accepted (drop the oldest turns)")
    messages = []
    call_ids: set[str] = set()
    for i, message in enumerate(raw):
        role = message.get("role") if isinstance(message, dict) else None
        if role not in ROLES:
            raise ServeError(400, f"messages[{i}]: role {role!r} is not supported "
                             f"(use one of {', '.join(ROLES)})")
        messages.append({"role": ROLES[role],
                         "content": _text(message.get("content"), f"messages[{i}]"),
                         **message_fields(message, f"messages[{i}]", call_ids)})
    return messages


def _structure(body: dict[str, Any]) -> dict[str, str]:
    """``response_format`` (and llama.cpp's own ``grammar`` field) as sampling fields."""
    fmt = body.get("response_format") or {"type": "text"}
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    grammar = body.get("grammar") or ""
    if not isinstance(grammar, str):
        raise ServeError(400, "'grammar' must be a GBNF grammar as text")
    if kind == "text":
        try:
            check_structure(grammar, "")
        except StructureError as exc:
            raise ServeError(400, f"'grammar': {exc}") from None
        return {"grammar": grammar, "json_schema": ""}
    if kind == "json_object":
        return {"grammar": "", "json_schema": '{"type": "object"}'}
    if kind == "json_schema":
        spec = fmt.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ServeError(400, "response_format.json_schema.schema must be a JSON object")
        try:
            text = json.dumps(schema)
            check_structure("", text)
        except (StructureError, ValueError, RecursionError) as exc:
            raise ServeError(400, f"response_format.json_schema.schema: {exc}") from None
        return {"grammar": "", "json_schema": text}
    raise ServeError(400, f"response_format type {kind!r} is not supported "
                     "(text, json_object or json_schema)")


def _sampling(body: dict[str, Any], base: p.SamplingParams) -> p.SamplingParams:
    if body.get("n") not in (None, 1):
        raise ServeError(400, "'n' must be 1: Hearth answers one choice at a time")
    fields: dict[str, Any] = {}
    for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed"):
        if body.get(name) is not None:
            fields[name] = body[name]
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        fields["max_tokens"] = max_tokens
    stop = body.get("stop")
    if stop is not None:
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise ServeError(400, "'stop' must be a string or a list of strings")
        fields["stop"] = stop
    fields.update(_structure(body))
    try:
        return replace(base, **fields)
    except (ValueError, TypeError) as exc:
        raise ServeError(400, str(exc)) from None


def parse(body: Any, base: p.SamplingParams, chat: bool) -> Request:
    """A request body of /v1/chat/completions (``chat``) or /v1/completions."""
    if not isinstance(body, dict):
        raise ServeError(400, "the request body must be a JSON object")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ServeError(400, "'model' is required (see GET /v1/models)")
    if chat:
        messages = _messages(body)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if not isinstance(prompt, str):
            raise ServeError(400, "'prompt' must be one string")
        messages = [{"role": "user", "content": prompt}]
    if not isinstance(body.get("stream", False), bool):
        raise ServeError(400, "'stream' must be true or false")
    tools = parse_request(body) if chat else ToolRequest()
    if not chat and body.get("tools") is not None:
        raise ServeError(400, "tools are for /v1/chat/completions")
    return Request(model, messages, tools.sampling(_sampling(body, base)),
                   bool(body.get("stream")), raw=not chat, tools=tools)


class Reply:
    """The JSON shapes of one answer, streamed or whole, chat or plain completion."""

    def __init__(self, model: str, chat: bool) -> None:
        self.model = model
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.sources: list[dict[str, Any]] | None = None
        """Passages the reply was given (``hearth_collections``): ``hearth_sources``
        beside ``choices``, in the whole answer and in a stream's first chunk."""

    def _wrap(self, choice: dict[str, Any], chunk: bool) -> dict[str, Any]:
        kind = "chat.completion" if self.chat else "text_completion"
        body = {"id": self.id, "object": kind + (".chunk" if chunk and self.chat else ""),
                "created": self.created, "model": self.model, "choices": [choice]}
        if self.sources is not None and (not chunk or "role" in choice.get("delta", {})):
            body["hearth_sources"] = self.sources
        return body

    def chunk(self, text: str, finish: str | None = None, first: bool = False,
              delta_calls: dict[str, Any] | None = None) -> dict[str, Any]:
        reason = FINISH.get(finish, "stop") if finish else None
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant"} if first else {}
            if text or first:
                delta["content"] = text
            delta.update(delta_calls or {})
            choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return self._wrap(choice, chunk=True)

    def whole(self, done: p.Done, calls: list[ToolCall] | None = None) -> dict[str, Any]:
        reason = "tool_calls" if calls else FINISH.get(done.stats.finish_reason, "stop")
        if self.chat:
            message: dict[str, Any] = {"role": "assistant",
                                       "content": None if calls else done.text}
            if calls:
                message["tool_calls"] = [c.to_openai() for c in calls]
            choice: dict[str, Any] = {"index": 0, "finish_reason": reason, "message": message}
        else:
            choice = {"index": 0, "text": done.text, "logprobs": None, "finish_reason": reason}
        body = self._wrap(choice, chunk=False)
        body["usage"] = usage(done.stats)
        return body


def usage(stats: p.ReplyStats) -> dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens,
            "completion_tokens": stats.completion_tokens,
            "total_tokens": stats.prompt_tokens + stats.completion_tokens}
