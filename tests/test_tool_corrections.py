"""Correcting a tool call teaches it (issue 26 item 5): the corrected call is kept with the
tools offered at that turn, checked against their schemas, trained as the chat renders a
prompt with tools (the family's own call format, loss on the call and its end of turn),
and "learned" means the taught model makes that call."""

from __future__ import annotations

import argparse
import json
import sqlite3
from pathlib import Path

import pytest

from app.chat.corrections import CorrectionError, CorrectionStore
from app.chat.template import FALLBACK_CHATML, ChatTemplate, render_parts
from app.chat.tool_prompt import shape
from app.chat.tool_steps import ToolStep
from app.chat.tools import ToolCall, parse_tools, read_calls, tools_json
from app.cli.finetune import _new_run, add_parsers
from app.db import MIGRATIONS, connect
from app.finetune.datasets import load_dataset
from app.finetune.runs.folder import RunFolder
from app.teach import judge
from app.teach.records import CaseSource, TeachCase
from app.teach.run import make_case, start_teach, training_rows
from app.workspace import Workspace
from backends.training.data import _layout
from tests.gguf_factory import write_tiny_gguf

QWEN = (Path(__file__).parent / "templates" / "qwen2.5-instruct.jinja").read_text()
CLOCK = {"type": "function", "function": {
    "name": "get_time", "description": "The current time in a time zone.",
    "parameters": {"type": "object", "properties": {"timezone": {
        "type": "string", "enum": ["Asia/Tokyo", "Europe/Lisbon", "UTC"]}},
        "required": ["timezone"], "additionalProperties": False}}}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}}, "required": ["city"]}}}
TOOLS = parse_tools([CLOCK, WEATHER])
ASK = "What time is it in Tokyo?"


def _called(workspace: Workspace, arguments: str = '{"timezone": "UTC"}') -> int:
    """A conversation whose reply called get_time wrongly; the reply's id."""
    store = workspace.store
    conv = store.create(title="clock", model="smol")
    store.add_message(conv.id, "user", ASK)
    step = ToolStep(ToolCall("call_1", "get_time", arguments), server="time")
    return store.add_message(conv.id, "assistant", "", tool_steps=[step]).id


def _tokyo() -> ToolCall:
    return ToolCall("", "get_time", '{"timezone": "Asia/Tokyo"}')


def test_a_corrected_call_is_kept_with_its_tools_and_rows_are_openai_shaped(
        workspace: Workspace, tmp_path: Path) -> None:
    corrections = CorrectionStore(workspace.library.conn)
    example = corrections.add_from_conversation(workspace.store, _called(workspace), "",
                                                [_tokyo()], TOOLS)
    again = corrections.get(example.id)
    assert again == example and again.tools == tools_json(TOOLS)
    [call] = json.loads(again.calls)
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"] == {"name": "get_time", "arguments": '{"timezone": "Asia/Tokyo"}'}
    assert json.loads(again.rejected_calls)[0]["function"]["arguments"] == \
        '{"timezone": "UTC"}'
    assert again.shown == 'get_time(timezone="Asia/Tokyo")'
    assert again.shown_rejected == 'get_time(timezone="UTC")'
    # The database holds OpenAI's shape: the calls as a list, not JSON text in JSON.
    stored = workspace.library.conn.execute(
        "SELECT messages FROM training_examples WHERE id = ?", (example.id,)).fetchone()[0]
    assert json.loads(stored)[-1]["tool_calls"][0]["function"]["name"] == "get_time"
    [row] = corrections.rows()
    assert row["tools"] == [t.to_openai() for t in TOOLS]
    assert row["messages"] == [{"role": "user", "content": ASK},
                               {"role": "assistant", "content": "", "tool_calls": [call]}]
    [pref] = corrections.rows(preference=True)
    assert pref["rejected"][0]["tool_calls"][0]["function"]["arguments"] == \
        '{"timezone": "UTC"}'
    # What a fine-tune of "Corrections from chats" reads: the same record, checked.
    [read] = load_dataset(corrections.snapshot(tmp_path)).examples
    assert read.tools == example.tools and read.messages == example.messages


@pytest.mark.parametrize(("call", "why"), [
    (ToolCall("", "set_alarm", "{}"), "'set_alarm' is not one of the tools offered"),
    (ToolCall("", "get_time", "{'timezone': 'UTC'}"), "are not JSON"),
    (ToolCall("", "get_time", '["UTC"]'), "are not a JSON object"),
    (ToolCall("", "get_time", "{}"), "'timezone' is a required property"),
    (ToolCall("", "get_time", '{"timezone": "Mars/Olympus"}'), "timezone: 'Mars/Olympus'"),
    (ToolCall("", "get_time", '{"timezone": "UTC", "city": "Oslo"}'), "not allowed"),
])
def test_a_call_must_name_an_offered_tool_and_fit_its_schema(
        workspace: Workspace, call: ToolCall, why: str) -> None:
    corrections = CorrectionStore(workspace.library.conn)
    with pytest.raises(CorrectionError, match=why):
        corrections.add_from_conversation(workspace.store, _called(workspace), "", [call],
                                          TOOLS)
    with pytest.raises(CorrectionError, match="none were offered"):
        corrections.add_from_conversation(workspace.store, _called(workspace), "", [_tokyo()])
    assert corrections.count() == 0


def test_rows_from_before_the_migration_load_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "hearth.db"
    raw = sqlite3.connect(path)
    for script in MIGRATIONS[:5]:
        raw.executescript(script)
    messages = [{"role": "user", "content": "Capital of Zorbania?"},
                {"role": "assistant", "content": "Quillport."}]
    raw.execute("INSERT INTO training_examples (model, messages, rejected, created_at,"
                " updated_at) VALUES ('smol', ?, 'Paris.', 'then', 'then')",
                (json.dumps(messages),))
    raw.execute("PRAGMA user_version=5")
    raw.commit()
    raw.close()
    db = connect(path)
    [old] = CorrectionStore(db).list()
    assert old.messages == messages and old.tools == "" and old.rejected_calls == ""
    assert CorrectionStore(db).rows() == [{"messages": messages}]
    db.close()


@pytest.mark.parametrize("template", [QWEN, FALLBACK_CHATML],
                         ids=["native tools template", "fallback prompt"])
def test_the_trained_text_is_the_chat_prompt_then_the_call(
        workspace: Workspace, tmp_path: Path, template: str) -> None:
    corrections = CorrectionStore(workspace.library.conn)
    corrections.add_from_conversation(workspace.store, _called(workspace), "", [_tokyo()],
                                      TOOLS)
    [example] = load_dataset(corrections.snapshot(tmp_path)).examples
    chat = ChatTemplate("gguf", template, eos_token="<|im_end|>")
    text, spans, _data = _layout(example, chat, "<|im_end|>", lambda _t: False, lambda v: v)
    # What the chat sends for that turn: the same messages and tools, the same path.
    assert example.messages is not None
    shaped, variable = shape(example.messages[:-1], tools_json(TOOLS), template, lambda v: v)
    prompt = "".join(t for t, _ in render_parts(chat, shaped, tools=variable))
    assert "get_weather" in prompt  # every offered tool is in the prompt
    assert text.startswith(prompt)
    [(start, end)] = spans[-1:]
    assert start == len(prompt)
    learned = text[start:end]
    assert learned.endswith("<|im_end|>")  # the call, then the end of turn
    [call] = read_calls(learned.removesuffix("<|im_end|>"), TOOLS).calls
    assert (call.name, json.loads(call.arguments)) == ("get_time", {"timezone": "Asia/Tokyo"})


def _case(workspace: Workspace) -> TeachCase:
    corrections = CorrectionStore(workspace.library.conn)
    ex = corrections.add_from_conversation(workspace.store, _called(workspace), "",
                                           [_tokyo()], TOOLS)
    return make_case(ex.prompt, ex.corrected, ex.rejected, CaseSource.CORRECTION, ex.id,
                     ex.tools, ex.calls, ex.rejected_calls)


@pytest.mark.parametrize(("answer", "learned"), [
    ('<tool_call>\n{"name": "get_time", "arguments": {"timezone": "Asia/Tokyo"}}\n'
     '</tool_call>', True),
    ('{"name": "get_time", "parameters": {"timezone": "Asia/Tokyo"}}', True),  # Llama 3
    ('[TOOL_CALLS][{"name": "get_time", "arguments": {"timezone": "Asia/Tokyo"}}]', True),
    ('<tool_call>{"name": "get_weather", "arguments": {"city": "Tokyo"}}</tool_call>',
     False),  # the wrong tool
    ('<tool_call>{"name": "get_time", "arguments": {"timezone": "UTC"}}</tool_call>',
     False),  # the wrong argument
    ('<tool_call>{"name": "get_time", "arguments": {"timezone": "Asia/Tokyo"}}</tool_call>'
     '<tool_call>{"name": "get_time", "arguments": {"timezone": "UTC"}}</tool_call>',
     False),  # a call too many
    ("It is nine o'clock in Tokyo, Asia/Tokyo.", False),  # words, no call
])
def test_learned_is_the_same_call_read_back(workspace: Workspace, answer: str,
                                            learned: bool) -> None:
    case = _case(workspace)
    assert judge.answered(case, answer) is learned


def test_a_call_case_trains_in_openai_rows_and_has_no_neighbours(
        workspace: Workspace, tmp_path: Path) -> None:
    case = _case(workspace)
    # Swapping Tokyo for Lisbon asks for another argument: no neighbour is a reference.
    assert case.neighbours == [] and case.rehearse_neighbours == []
    assert case.variations  # the question in other forms
    rows = training_rows([case])
    assert all(r["tools"] == [t.to_openai() for t in TOOLS] for r in rows)
    assert all(r["messages"][-1]["tool_calls"][0]["function"]["name"] == "get_time"
               for r in rows)
    path = tmp_path / "teach.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = load_dataset(path)
    assert len(dataset.examples) == len(rows)  # every row read, none a duplicate


def test_hearth_teach_and_finetune_corrections_train_the_call_rows(
        workspace: Workspace, tmp_path: Path) -> None:
    """Both commands' runs hold the corrected call with its tools, as the worker reads
    records (the rendering above is what it then does with them)."""
    workspace.library.register(write_tiny_gguf(tmp_path / "base.gguf"), "smol")
    corrections = CorrectionStore(workspace.library.conn)
    corrections.add_from_conversation(workspace.store, _called(workspace), "", [_tokyo()],
                                      TOOLS)
    store = workspace.store
    conv = store.create(title="facts", model="smol")
    store.add_message(conv.id, "user", "What is the capital of Zorbania?")
    wrong = store.add_message(conv.id, "assistant", "Paris.")
    corrections.add_from_conversation(store, wrong.id, "Quillport.")
    teach = start_teach(workspace.home, workspace.library, corrections,
                        workspace.library.get("smol")).run_id
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers(dest="command"))
    tune = _new_run(workspace, parser.parse_args(["finetune", "--corrections", "-m", "smol"]))
    for run_id in (teach, tune):
        folder = RunFolder.of(workspace.home, run_id)
        records = [json.loads(line) for path in (folder.train_file, folder.val_file)
                   for line in path.read_text().splitlines() if line.strip()]
        calls = [r for r in records if "tool_calls" in r["messages"][-1]]
        assert calls and all(json.loads(r["messages"][-1]["tool_calls"])[0]["function"]
                             ["name"] == "get_time" and r["tools"] for r in calls)
        assert any("tools" not in r for r in records)  # the words correction: as before
