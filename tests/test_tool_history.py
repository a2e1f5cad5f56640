"""Tool calls in a conversation (issue 26): a reply that calls is stored with its steps,
the person's decisions and results go back to the model in OpenAI's shape, the number of
calls in a row is bounded, and calls survive branches, export and import."""

from __future__ import annotations

import json
from pathlib import Path

from app.chat.conversations import model_messages
from app.chat.export import to_markdown, to_openai, write_export
from app.chat.importer import import_file
from app.chat.tool_steps import DENIED_TEXT, StepList, StepState
from app.chat.tools import parse_tools
from app.chat.turn import ToolOffer
from app.workspace import Workspace
from tests.test_chat_versions import _done, _session

CLOCK = {"type": "function", "function": {
    "name": "get_current_time", "parameters": {
        "type": "object", "properties": {"timezone": {"type": "string"}}}}}
CALL = '<tool_call>{"name": "get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}' \
       '</tool_call>'


def _calling(workspace: Workspace, max_rounds: int = 5):  # type: ignore[no-untyped-def]
    session, client, cid = _session(workspace)
    session.tools = ToolOffer(parse_tools([CLOCK]), {"get_current_time": "time"},
                              max_rounds=max_rounds)
    finished = session.handle(_done(session.send(cid, "Time in Tokyo?").request_id, CALL))
    assert finished is not None and finished.saved is not None
    return session, client, cid, finished.saved


def test_a_call_is_stored_pending_then_its_result_reaches_the_model(
        workspace: Workspace) -> None:
    session, client, cid, saved = _calling(workspace)
    assert json.loads(client.tools[0])[0]["function"]["name"] == "get_current_time"
    [step] = saved.tool_steps
    assert step.state is StepState.PENDING and step.server == "time"
    assert json.loads(step.call.arguments) == {"timezone": "Asia/Tokyo"}
    step.state, step.result = StepState.RAN, '{"datetime": "2026-12-07T20:00:00+09:00"}'
    session.resolve(saved.id, [step])
    reply = session.follow_up(cid)
    sent = client.requests[-1][1]
    assert [m["role"] for m in sent] == ["user", "assistant", "tool"]
    assert json.loads(sent[1]["tool_calls"])[0]["id"] == step.call.id
    assert sent[2] == {"role": "tool", "content": step.result,
                       "tool_call_id": step.call.id, "name": "get_current_time"}
    session.handle(_done(reply.request_id, "It is 20:00 in Tokyo."))
    assert [m.content for m in workspace.store.messages(cid)][-1] == "It is 20:00 in Tokyo."


def test_a_denied_call_tells_the_model_and_calls_in_a_row_are_bounded(
        workspace: Workspace) -> None:
    session, client, cid, saved = _calling(workspace, max_rounds=2)
    step = saved.tool_steps[0]
    step.state = StepState.DENIED
    session.resolve(saved.id, [step])
    again = session.handle(_done(session.follow_up(cid).request_id, CALL))
    assert client.requests[-1][1][2]["content"] == DENIED_TEXT
    assert again is not None and again.saved is not None and again.saved.tool_steps
    session.resolve(again.saved.id, [again.saved.tool_steps[0]])
    session.follow_up(cid)
    assert client.tools[-1] == ""  # two calls in a row: now it must answer


def test_calls_survive_export_and_import_and_old_rows_load(
        workspace: Workspace, tmp_path: Path) -> None:
    session, _client, cid, saved = _calling(workspace)
    step = saved.tool_steps[0]
    step.state, step.result = StepState.RAN, "20:00"
    session.resolve(saved.id, [step])
    session.handle(_done(session.follow_up(cid).request_id, "It is 20:00."))
    store = workspace.store
    body = to_openai(store.get(cid), store.messages(cid))
    assert body["messages"][1]["tool_calls"][0]["function"]["name"] == "get_current_time"
    assert "`get_current_time` (ran)" in to_markdown(store.get(cid), store.messages(cid))
    path = write_export(tmp_path / "chat.json", store.get(cid), store.messages(cid))
    [new] = import_file(store, path).ids
    back = store.messages(new)
    assert [m.role for m in back] == ["user", "assistant", "assistant"]
    assert back[1].tool_steps[0].result == "20:00"
    assert back[1].tool_steps[0].state is StepState.RAN
    assert model_messages(store.get(new), back) == model_messages(store.get(cid),
                                                                  store.messages(cid))
    assert StepList.loads("not json").steps == []
    assert StepList.loads('[{"id": 1}, 5]').steps == []  # damaged entries are skipped


def test_regenerating_a_call_makes_a_branch(workspace: Workspace) -> None:
    session, _client, cid, saved = _calling(workspace)
    again = session.handle(_done(session.regenerate(cid).request_id, "I cannot tell."))
    assert again is not None and again.saved is not None
    shown = workspace.store.messages(cid)
    assert shown[-1].content == "I cannot tell." and shown[-1].branch_count == 2
    workspace.store.select_branch(shown[-1].id, 0)
    assert workspace.store.messages(cid)[-1].tool_steps[0].call.id == \
        saved.tool_steps[0].call.id


def test_a_required_call_holds_each_turns_first_reply_also_when_regenerated(
        workspace: Workspace) -> None:
    session, client, cid = _session(workspace)
    session.tools = ToolOffer(parse_tools([CLOCK]), required=True)
    finished = session.handle(_done(session.send(cid, "Time in Tokyo?").request_id, CALL))
    assert json.loads(client.samplings[-1].json_schema)["properties"]["name"] == {
        "const": "get_current_time"}
    session.regenerate(cid)
    assert client.samplings[-1].json_schema  # the regenerated call is held too
    assert finished is not None and finished.saved is not None
    session.resolve(finished.saved.id, finished.saved.tool_steps)
    session.follow_up(cid)
    assert client.samplings[-1] is None or not client.samplings[-1].json_schema
