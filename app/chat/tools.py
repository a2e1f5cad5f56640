"""Tools a model may call: their definitions, the calls it makes, and how it is held to them.

A tool is a function the *client* runs (an MCP server, the person's own code behind
``hearth serve``); the model only asks for it, by writing a call. This module is the one
place that knows the shapes:

- :class:`Tool`: a definition as OpenAI's ``tools`` field gives it (name, description,
  JSON-schema parameters), checked on the way in. Definitions come from strangers (an
  MCP server, an API client), so a name must be plain, and a schema must be JSON Schema
  of bounded size and depth that becomes a bounded grammar
  (:mod:`app.inference.grammar_limits`).
- :class:`ToolCall`: a call read back from the model's text. Models write calls in their
  family's format: ``<tool_call>{…}</tool_call>`` (Qwen 2.5/3, Hermes, SmolLM3, and
  Hearth's own fallback prompt), a bare JSON object (Llama 3.x, after its
  ``<|python_tag|>``), a JSON list (Mistral's ``[TOOL_CALLS]``, Phi-4-mini). Control
  tokens never reach the reply's text, so what is left is JSON in one of these wrappers.
  :func:`read_calls` accepts them all, and says plainly what was wrong with a call
  that is malformed or names a tool that was not offered.
- :func:`call_schema`: when a call is required (``tool_choice: "required"`` or a named
  function), the reply is constrained by llama.cpp's grammar sampler to a JSON call
  whose arguments follow the tool's schema, so that even a 135M model writes a valid
  call. With ``auto`` the model writes freely until it begins a call (``<tool_call>``,
  or a reply that opens with ``{"name": "``); from there the call is held to the same
  schemas (:func:`auto_call_schema`, a lazy grammar:
  :mod:`backends.inference.call_grammar`). What the grammar cannot do is make a model
  begin a call; and a beginning that already went wrong (a misspelt key) is left free,
  so such a call still comes back as text.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from app.errors import HearthError
from app.inference.grammar_limits import StructureError, check_schema

MAX_TOOLS = 128
"""Definitions in one request (OpenAI's own limit)."""
MAX_DESCRIPTION = 8_000
"""Characters of one tool's description: MCP servers write paragraphs, not books."""
MAX_PARALLEL = 8
"""Calls in one reply when parallel calls are asked for and the grammar holds the reply."""
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""OpenAI's rule for a function name; also keeps names plain text in every prompt."""
EMPTY_PARAMETERS: dict[str, Any] = {"type": "object", "properties": {}}
_SCHEMA_KEYS = {"type", "properties", "anyOf", "oneOf", "allOf", "$ref", "enum", "const",
                "items", "required", "additionalProperties", "$defs", "definitions"}


class ToolError(HearthError, ValueError):
    """A tool definition, a tool choice or a call that cannot be used; says why."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=lambda: dict(EMPTY_PARAMETERS))

    def to_openai(self) -> dict[str, Any]:
        """The definition as OpenAI and chat templates (their ``tools`` variable) take it."""
        return {"type": "function", "function": {
            "name": self.name, "description": self.description,
            "parameters": self.parameters}}


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """The arguments as JSON text (an object), as OpenAI carries them."""

    def to_openai(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": self.arguments}}


def tools_json(tools: list[Tool]) -> str:
    """Definitions as the protocol carries them (``Chat.tools``): OpenAI's list, as text."""
    return json.dumps([t.to_openai() for t in tools], ensure_ascii=False)


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


# ------------------------------------------------------------------ definitions


def parse_tools(raw: Any) -> list[Tool]:
    """OpenAI's ``tools`` list as checked :class:`Tool`\\ s; ToolError names the bad one."""
    if not isinstance(raw, list):
        raise ToolError("'tools' must be a list of {\"type\": \"function\", ...} objects")
    if len(raw) > MAX_TOOLS:
        raise ToolError(f"'tools' holds {len(raw)} tools; at most {MAX_TOOLS} are accepted")
    tools: list[Tool] = []
    for i, item in enumerate(raw):
        where = f"tools[{i}]"
        if not isinstance(item, dict) or item.get("type") != "function":
            raise ToolError(f"{where}: only {{\"type\": \"function\"}} tools are supported")
        function = item.get("function")
        if not isinstance(function, dict):
            raise ToolError(f"{where}.function must be an object with a 'name'")
        tools.append(tool_from(function, where + ".function"))
    names = [t.name for t in tools]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ToolError(f"'tools' names {', '.join(twice)} more than once")
    return tools


def tool_from(function: dict[str, Any], where: str = "the tool") -> Tool:
    """One definition (``{name, description, parameters}``), checked."""
    name = function.get("name")
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ToolError(f"{where}.name must be 1-64 letters, digits, '_' or '-', "
                        f"not {_shown(name)}")
    description = function.get("description") or ""
    if not isinstance(description, str):
        raise ToolError(f"{where}.description must be text")
    if len(description) > MAX_DESCRIPTION:
        raise ToolError(f"{where}.description is {len(description):,} characters; at most "
                        f"{MAX_DESCRIPTION:,} are accepted")
    parameters = function.get("parameters")
    if parameters is None:
        parameters = dict(EMPTY_PARAMETERS)
    if not isinstance(parameters, dict):
        raise ToolError(f"{where}.parameters must be a JSON Schema object")
    if parameters and not _SCHEMA_KEYS & parameters.keys():
        raise ToolError(f"{where}.parameters is not JSON Schema (no type, properties, "
                        "anyOf, $ref, ...)")
    if parameters.get("type", "object") != "object":
        raise ToolError(f"{where}.parameters must describe an object "
                        "(\"type\": \"object\"): arguments are named")
    try:
        check_schema(json.dumps(parameters))
    except (StructureError, ValueError, RecursionError) as exc:
        raise ToolError(f"{where}.parameters: {exc}") from None
    return Tool(name, description, parameters)


def check_arguments(tool: Tool, arguments: str) -> str:
    """``arguments`` (JSON text) checked against ``tool``'s schema: the same text,
    normalised, or ToolError saying what is wrong, where. For calls a person writes (a
    corrected call): a model's own are held to the schema by grammar when forced, and a
    server answers a wrong one itself."""
    value = json_object(arguments)
    if isinstance(value, str):
        raise ToolError(f"the arguments of {tool.name} are {value}: write them as "
                        '{"name": value, ...}')
    try:
        problem = best_match(Draft202012Validator(tool.parameters).iter_errors(value))
    except Exception as exc:  # a stranger's schema fails in the validator's own ways
        raise ToolError(f"the schema of {tool.name} cannot check arguments: {exc}") from None
    if problem is not None:
        where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}"
                        for p in problem.absolute_path).lstrip(".")
        raise ToolError(f"the arguments of {tool.name} do not fit its schema: "
                        f"{where + ': ' if where else ''}{problem.message}")
    return json.dumps(value, ensure_ascii=False)


def shown_call(name: str, arguments: str) -> str:
    """A call as a person reads it in a list: ``get_time(timezone="Asia/Tokyo")``."""
    value = json_object(arguments)
    if isinstance(value, str):
        return f"{name}({arguments})"
    return f"{name}(" + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}"
                                  for k, v in value.items()) + ")"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ------------------------------------------------------------------ tool choice


@dataclass(frozen=True)
class ToolChoice:
    """``auto``: the model may call; ``none``: it may not; ``required``: it must call
    one of the tools; ``function``: it must call the named one."""

    mode: str = "auto"
    function: str = ""

    @property
    def forced(self) -> bool:
        return self.mode in ("required", "function")


def parse_choice(raw: Any, tools: list[Tool]) -> ToolChoice:
    if raw is None:
        return ToolChoice("auto" if tools else "none")
    if raw in ("auto", "none", "required"):
        if raw == "required" and not tools:
            raise ToolError("'tool_choice' is \"required\" but no tools were given")
        return ToolChoice(raw)
    function = raw.get("function") if isinstance(raw, dict) else None
    name = function.get("name") if isinstance(function, dict) else None
    if not isinstance(raw, dict) or raw.get("type") != "function" or not isinstance(name, str):
        raise ToolError("'tool_choice' must be \"auto\", \"none\", \"required\" or "
                        "{\"type\": \"function\", \"function\": {\"name\": ...}}")
    if name not in {t.name for t in tools}:
        raise ToolError(f"'tool_choice' names {_shown(name)}, which is not in 'tools'")
    return ToolChoice("function", name)


def call_schema(tools: list[Tool], choice: ToolChoice, parallel: bool) -> str:
    """The JSON schema a reply's call is held to: ``{"name": …, "arguments": {…}}``, or a
    list of them when parallel calls are asked for and more than one tool may be called
    (``required``, or ``auto``, where the grammar holds only a call the model begins).

    A tool whose parameters use ``$ref`` gets any JSON object as arguments: a reference
    is relative to the document's root, which is no longer its schema once nested here.
    """
    offered = [t for t in tools if choice.mode != "function" or t.name == choice.function]
    options = [{"type": "object", "properties": {
        "name": {"const": t.name},
        "arguments": {"type": "object"} if "$ref" in json.dumps(t.parameters)
        else t.parameters},
        "required": ["name", "arguments"], "additionalProperties": False}
        for t in offered]
    one: dict[str, Any] = options[0] if len(options) == 1 else {"anyOf": options}
    if parallel and choice.mode in ("required", "auto"):
        one = {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_PARALLEL}
    text = json.dumps(one)
    try:
        check_schema(text)
    except StructureError as exc:
        raise ToolError(f"the tools together are too large to hold a reply to: {exc}"
                        ) from None
    return text


def auto_call_schema(tools: list[Tool], parallel: bool) -> str:
    """The schema of a call (or, ``parallel``, of a list of calls) that the model begins
    by itself (``auto``), held from there on; "" when the tools together are too large
    for a grammar: the model then writes its calls freely, as it did before there was a
    lazy grammar, rather than not at all."""
    try:
        return call_schema(tools, ToolChoice("auto"), parallel)
    except ToolError:
        return ""


# ------------------------------------------------------------------ reading calls

_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)
_PREFIXES = ("[TOOL_CALLS]", "<|python_tag|>", "<|tool_call|>", "functools")


@dataclass(frozen=True)
class CallReading:
    """What a reply held: ``calls`` (possibly none: plain text), or ``problem``, a
    sentence saying why what looked like a call cannot be used."""

    calls: list[ToolCall]
    problem: str = ""


def looks_like_call(text: str) -> bool:
    """Whether a reply (so far) starts the way a call starts; plain text does not."""
    head = text.lstrip()
    return head.startswith(("<tool_call>", "{", "[", "```", *_PREFIXES))


def could_become_call(text: str) -> bool:
    """Whether more text could still make this beginning a call (streaming holds it)."""
    head = text.lstrip()
    return not head or looks_like_call(head) or any(
        p.startswith(head) for p in ("<tool_call>", "```", *_PREFIXES))


def read_calls(text: str, tools: list[Tool]) -> CallReading:
    """The calls in a reply, in any of the families' formats (see the module doc)."""
    body = text.strip()
    blocks = _BLOCK.findall(body) if "<tool_call>" in body else None
    if blocks is None:
        if not looks_like_call(body):
            return CallReading([])
        for prefix in _PREFIXES:
            body = body.removeprefix(prefix).strip()
        if body.endswith("<|/tool_call|>"):
            body = body.removesuffix("<|/tool_call|>").strip()
        fence = _FENCE.match(body)
        blocks = [fence.group(1) if fence else body]
    found: list[Any] = []
    for block in blocks:
        try:
            value = json.loads(block)
        except (ValueError, RecursionError):
            return CallReading([], f"the model wrote a tool call that is not valid JSON: "
                               f"{_shown(block)}")
        found.extend(value if isinstance(value, list) else [value])
    calls: list[ToolCall] = []
    offered = {t.name for t in tools}
    for item in found:
        call = _call_of(item, offered)
        if isinstance(call, str):
            return CallReading([], call)
        calls.append(call)
    return CallReading(calls)


def _call_of(item: Any, offered: set[str]) -> ToolCall | str:
    """A call from ``{"name", "arguments" | "parameters"}``, or why it is not one."""
    if isinstance(item, dict) and isinstance(item.get("function"), dict):
        item = item["function"]  # OpenAI's own shape, as some models echo it
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        return f"the model wrote a tool call without a tool name: {_shown(item)}"
    name = item["name"]
    if name not in offered:
        return f"the model called {_shown(name)}, which is not one of the tools offered"
    arguments = item.get("arguments", item.get("parameters", {}))
    if isinstance(arguments, str):
        arguments = json_object(arguments)
    elif not isinstance(arguments, dict):
        arguments = "not a JSON object"
    if isinstance(arguments, str):
        return f"the model's call of {name} has arguments that are {arguments}"
    return ToolCall(new_call_id(), name, json.dumps(arguments, ensure_ascii=False))


def json_object(text: str) -> dict[str, Any] | str:
    """Arguments written as JSON text, as an object; or what they are instead ("not
    JSON", "not a JSON object"), for the sentence that says so."""
    try:
        value = json.loads(text or "{}")
    except (ValueError, RecursionError):
        return "not JSON"
    return value if isinstance(value, dict) else "not a JSON object"
