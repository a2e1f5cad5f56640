"""A tool call held to the tools' schemas once the model has begun it, with ``tool_choice:
"auto"`` (issue 26; backends/inference/call_grammar.py).

Through the real worker on a tiny random model: its words are noise, so a call is begun
for it (a reply continued from ``<tool_call>\\n{"name": "``, ``{"name": "`` or
``[{"name": "``). Free, the noise that follows is no call; held, it is a call whose
arguments fit the schema. A reply that begins no call is the same with and without
the lazy grammar, and a beginning that does not fit leaves the reply free."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app.chat.tools import (
    auto_call_schema,
    check_arguments,
    parse_tools,
    read_calls,
    tools_json,
)
from app.chat.turn import ChatSession, ToolOffer
from app.inference import protocol as p
from app.inference.client import InferenceClient, WorkerError
from app.workspace import Workspace
from backends.inference.call_grammar import call_grammar
from backends.inference.llama_compat import GrammarError
from tests.arch_factory import write_tiny_arch_gguf

CLOCK = {"type": "function", "function": {
    "name": "get_current_time", "description": "The current time in a time zone.",
    # An enum keeps a random model's argument short: a grammar cannot end a free string.
    "parameters": {"type": "object", "properties": {"timezone": {
        "type": "string", "enum": ["Asia/Tokyo", "UTC"]}},
        "required": ["timezone"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two whole numbers.",
    "parameters": {"type": "object", "required": ["a", "b"], "additionalProperties": False,
                   "properties": {"a": {"type": "integer", "enum": [1, 2]},
                                  "b": {"type": "integer", "enum": [3, 4]}}}}}
TOOLS = parse_tools([CLOCK, ADD])
ASK = [{"role": "user", "content": "What time is it in Tokyo?"}]
LONG = {"type": "string", "maxLength": 30_000}  # refused by Hearth's bounds


# ------------------------------------------------------------------ without a model


def test_the_grammar_allows_one_call_unless_parallel_calls_are_asked_for() -> None:
    one = call_grammar(auto_call_schema(TOOLS, parallel=False))
    many = call_grammar(auto_call_schema(TOOLS, parallel=True))
    root = one.splitlines()[0]
    assert root.startswith('root ::= " "? ("<tool_call>"') and "{0,7}" not in root
    assert "| call |" in root and '"[" ' in root  # the three ways a call may begin
    assert many.splitlines()[0].count("{0,7}") == 2  # blocks, and items of a list
    assert sum(line.startswith("root ::=") for line in many.splitlines()) == 1
    assert '"\\"get_current_time\\""' in one and '"\\"add\\""' in one


def test_a_call_schema_beyond_the_bounds_is_refused_with_the_reason() -> None:
    with pytest.raises(GrammarError, match="structured output is refused"):
        call_grammar(json.dumps(LONG))


def test_tools_too_large_for_a_grammar_leave_auto_free() -> None:
    """A forced call cannot be given (ToolError); a begun one is simply not held."""
    many = parse_tools([{"type": "function", "function": {
        "name": f"t{i}", "parameters": {"type": "object", "properties": {
            f"p{j}": {"type": "string", "enum": ["a", "b"]} for j in range(40)}}}}
        for i in range(128)])
    assert auto_call_schema(many, parallel=True) == ""
    assert auto_call_schema(TOOLS, parallel=False)


class _Recording:
    def __init__(self) -> None:
        self.samplings: list[p.SamplingParams] = []

    def chat(self, messages: list[dict[str, str]], sampling: Any = None,
             continue_last: bool = False, tools: str = "") -> str:
        self.samplings.append(sampling)
        return f"r{len(self.samplings)}"


def test_the_chat_holds_a_begun_call_and_a_required_one(workspace: Workspace) -> None:
    client = _Recording()
    session = ChatSession(workspace.store, client)  # type: ignore[arg-type]
    cid = workspace.store.create().id
    session.tools = ToolOffer(TOOLS)
    session.send(cid, "What time is it?")
    auto = client.samplings[-1]
    assert auto.call_schema == auto_call_schema(TOOLS, parallel=False) and not auto.json_schema
    session.tools = ToolOffer(TOOLS, required=True)
    session.send(cid, "And now?")
    forced = client.samplings[-1]
    assert forced.json_schema and not forced.call_schema
    session.tools = ToolOffer(TOOLS)
    own = p.SamplingParams(json_schema='{"type": "object"}')  # the person's structure
    session.send(cid, "As JSON", own)
    assert client.samplings[-1] == own


# ------------------------------------------------------------------ the real worker


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InferenceClient]:
    """The worker with a tiny llama on the starter's ChatML template (the fallback
    tool prompt, whose calls are ``<tool_call>`` blocks)."""
    folder = tmp_path_factory.mktemp("call-grammar")
    model = write_tiny_arch_gguf("llama", folder / "tiny.gguf")
    worker = InferenceClient(log_file=folder / "worker.log")
    worker.start()
    worker.load_blocking(str(model), n_ctx=2048)
    yield worker
    worker.close()


def _reply(client: InferenceClient, begun: str = "", schema: str = "", **sampling: Any
           ) -> p.Done:
    """A reply to ASK (greedy unless asked) with the tools offered, continuing ``begun``
    if given."""
    messages = ASK + ([{"role": "assistant", "content": begun}] if begun else [])
    settings = {"temperature": 0.0, "seed": 0, "max_tokens": 300, **sampling}
    return client.reply_blocking(messages, p.SamplingParams(call_schema=schema, **settings),
                                 tools=tools_json(TOOLS), timeout=120,
                                 continue_last=bool(begun))


@pytest.mark.parametrize(("begun", "parallel"), [
    ('<tool_call>\n{"name": "', False),  # Qwen, Hermes, SmolLM3, Hearth's fallback
    ('{"name": "', False),  # Llama 3.x's bare call
    ('[{"name": "', True),  # a list of calls
])
def test_a_begun_call_is_finished_to_the_tools_schema(
        client: InferenceClient, begun: str, parallel: bool) -> None:
    free = _reply(client, begun)
    assert not read_calls(begun + free.text, TOOLS).calls, free.text  # noise, no call
    held = _reply(client, begun, auto_call_schema(TOOLS, parallel))
    calls = read_calls(begun + held.text, TOOLS).calls
    assert calls and held.stats.finish_reason == "stop", held.text
    for call in calls:
        [tool] = [t for t in TOOLS if t.name == call.name]
        check_arguments(tool, call.arguments)  # raises unless they fit its schema
    assert len(calls) == 1 or parallel


def test_a_reply_that_begins_no_call_is_the_same_held_or_free(
        client: InferenceClient) -> None:
    """Sampled with a seed (greedy, this model writes only newlines): the same words."""
    free = _reply(client, max_tokens=60, temperature=1.0)
    held = _reply(client, schema=auto_call_schema(TOOLS, parallel=True), max_tokens=60,
                  temperature=1.0)
    assert free.text.strip() and not read_calls(free.text, TOOLS).calls
    assert held.text == free.text
    assert held.stats.completion_tokens == free.stats.completion_tokens == 60


def test_a_beginning_that_does_not_fit_leaves_the_reply_free(
        client: InferenceClient) -> None:
    pid = client.proc.pid if client.proc else None
    begun = '<tool_call>\n{"nome": "'  # no such key: the grammar refuses the "o"
    held = _reply(client, begun, auto_call_schema(TOOLS, parallel=False))
    assert held.text == _reply(client, begun).text  # as if there were no grammar
    assert not read_calls(begun + held.text, TOOLS).calls
    assert client.alive and client.proc is not None and client.proc.pid == pid


def test_the_replys_limits_hold_across_the_switch(client: InferenceClient) -> None:
    begun, schema = '<tool_call>\n{"name": "', auto_call_schema(TOOLS, parallel=False)
    cut = _reply(client, begun, schema, max_tokens=3)
    assert cut.stats.finish_reason == "length" and cut.stats.completion_tokens == 3
    stopped = _reply(client, begun, schema, stop=["</tool_call>"])
    assert stopped.stats.finish_reason == "stop" and "</tool_call>" not in stopped.text
    [call] = read_calls(begun + stopped.text, TOOLS).calls  # a block may end unclosed
    assert call.name in ("get_current_time", "add")


def test_a_call_schema_the_worker_cannot_hold_is_a_bad_request(
        client: InferenceClient) -> None:
    with pytest.raises(WorkerError) as refused:
        client.reply_blocking(ASK, p.SamplingParams(call_schema=json.dumps(LONG)), timeout=120)
    event = refused.value.event
    assert isinstance(event, p.Error) and event.error_kind == "bad_request"
    assert "maxLength" in event.message
    assert _reply(client, max_tokens=5).stats.finish_reason == "length"  # it lives on
