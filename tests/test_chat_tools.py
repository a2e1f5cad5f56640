"""Tools in the window (issue 26): every call is a card, shown plain and asked about;
an allowed call runs off the GUI thread and the model goes on, a denied or failing one is
said to the model and the conversation goes on; "always" holds for the next call. A
running call can be stopped (its card's Stop, or the window's), and the person's message
shows while the conversation's servers start.

The model is a recording stand-in (it answers what each test feeds it); the MCP servers
are real: mcp-server-time from PyPI, and tests/mcp/hostile_server.py for a tool that
fails."""

from __future__ import annotations

import json
import shlex
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.chat.conversations import Message
from app.chat.tool_steps import DENIED_TEXT, STOPPED_TEXT, StepState, ToolStep
from app.chat.tools import ToolCall
from app.inference import protocol as p
from app.tools.chat_settings import ToolSettings
from app.tools.servers import ServerEntry, ServerList
from app.workspace import Workspace
from ui.chat.chat_view_model import ChatViewModel, ModelState
from ui.chat.composer import Composer
from ui.chat.conversation_view import ConversationView
from ui.chat.inference_bridge import InferenceBridge
from ui.chat.tool_card import RESULT_SHOWN, ToolCard, ToolCards

TIME = "python -m mcp_server_time --local-timezone UTC"
HOSTILE_SCRIPT = Path(__file__).parent / "mcp" / "hostile_server.py"
HOSTILE = f"{sys.executable} {HOSTILE_SCRIPT} serve"
HANG = '<tool_call>{"name": "hang", "arguments": {}}</tool_call>'
TOKYO = '<tool_call>{"name": "get_current_time", "arguments": {"timezone": "Asia/Tokyo"}}' \
    '</tool_call>'


class RecordingClient:
    """Stands in for the worker: records each request, answers what the test feeds."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, list[dict[str, str]], str]] = []
        self.sampling: list[p.SamplingParams | None] = []

    def chat(self, messages: list[dict[str, str]], sampling: Any = None,
             continue_last: bool = False, tools: str = "") -> str:
        request_id = f"r{len(self.requests) + 1}"
        self.requests.append((request_id, messages, tools))
        self.sampling.append(sampling)
        return request_id

    def cancel(self, request_id: str) -> None:
        pass


@pytest.fixture
def chat(qtbot: QtBot, workspace: Workspace) -> Iterator[tuple[ChatViewModel, RecordingClient]]:
    model = ChatViewModel(workspace, InferenceBridge())
    model.state = ModelState.READY
    client = RecordingClient()
    model.client.chat = client.chat  # type: ignore[method-assign]
    model.client.cancel = client.cancel  # type: ignore[method-assign]
    yield model, client
    model.shutdown()


def _done(request_id: str, text: str) -> p.Done:
    return p.Done(request_id, text, p.ReplyStats(10, 0, 3, 0.1, 100.0, 50.0, 0.2, "stop"))


def _view(qtbot: QtBot, chat: ChatViewModel) -> ConversationView:
    view = ConversationView(chat)
    qtbot.addWidget(view)
    view.resize(900, 700)
    view.show()
    return view


def _with_tools(chat: ChatViewModel, command: str, name: str = "time",
                required: bool = False) -> int:
    ServerList(chat.workspace.home.root).add(ServerEntry(name, command))
    cid = chat.new_conversation()
    chat.tools.set_settings(cid, ToolSettings((name,), required=required))
    return cid


def _card(view: ConversationView, message_id: int, index: int = 0) -> ToolCard:
    return view.widgets[message_id].tool_cards.cards[index]


def _asked(qtbot: QtBot, chat: ChatViewModel, client: RecordingClient, text: str,
           calls: str) -> Message:
    """Send ``text``, wait for the conversation's servers, and let the model answer with
    ``calls``; the stored reply with its pending steps."""
    assert chat.send(text) is not None
    qtbot.waitUntil(lambda: bool(chat.reply and chat.reply.request_id), timeout=60_000)
    assert client.requests[-1][2], "the conversation's tools were offered"
    return _answer(qtbot, chat, client, calls)


def _answer(qtbot: QtBot, chat: ChatViewModel, client: RecordingClient, text: str) -> Message:
    with qtbot.waitSignal(chat.reply_finished):
        chat._on_event(_done(client.requests[-1][0], text))
    return chat.messages()[-1]


def _tool_turn(client: RecordingClient) -> dict[str, str]:
    """What the model was shown of the last call, in the last request."""
    return next(m for m in reversed(client.requests[-1][1]) if m["role"] == "tool")


# ------------------------------------------------------------------ the card


def test_a_card_shows_a_strangers_text_plain_and_cut(qtbot: QtBot) -> None:
    markup = "<b>bold</b> <img src='/dev/zero'> <a href='file:///etc'>x</a>"
    result = markup + "\n" + "y" * 5_000
    call = ToolCall("c1", "fetch_page", json.dumps({"url": "<i>x</i>"}))
    message = Message(7, 1, 1, "assistant", "",
                      tool_steps=[ToolStep(call, StepState.RAN, result, "<u>web</u>")])
    cards = ToolCards()
    qtbot.addWidget(cards)
    cards.show_steps(message)
    cards.show()
    card = cards.cards[0]
    assert card.title.text() == "Tool call: fetch_page  ·  from <u>web</u>"
    assert "<i>x</i>" in card.arguments.text()
    for label in (card.title, card.arguments, card.state, card.note):
        assert label.textFormat().name == "PlainText"
    shown = card.result.toPlainText()
    assert shown.startswith(markup) and len(shown) < RESULT_SHOWN + 10
    assert card.show_all.isVisible() and "5,0" in card.show_all.text()
    card.show_all.click()
    assert card.result.toPlainText() == result  # all of it, still as text
    assert not card.buttons.isVisible() and card.state.text() == "Done"


def test_a_pending_call_asks_and_says_what_the_person_chose(qtbot: QtBot) -> None:
    call = ToolCall("c1", "get_current_time", '{"timezone": "Asia/Tokyo"}')
    cards = ToolCards()
    qtbot.addWidget(cards)
    cards.show_steps(Message(3, 1, 1, "assistant", "", tool_steps=[ToolStep(call)]))
    cards.show()
    card = cards.cards[0]
    assert card.buttons.isVisible() and not card.result.isVisible()
    with qtbot.waitSignal(cards.decided) as decided:
        card.allow_always.click()
    assert decided.args == [3, 0, "always"]
    cards.set_running({0})
    assert card.state.text() == "Running…" and not card.allow_once.isVisible()
    assert card.stop.isVisible()  # a running call offers Stop
    with qtbot.waitSignal(cards.stop_requested) as stopping:
        card.stop.click()
    assert stopping.args == [3, 0]


# ------------------------------------------------------------- deciding


def test_deny_stores_denied_and_the_model_goes_on(qtbot: QtBot,
                                                  chat: tuple[ChatViewModel, Any]) -> None:
    model, client = chat
    cid = model.new_conversation()
    store = model.store
    store.add_message(cid, "user", "What time is it in Tokyo?")
    call = ToolCall("c1", "get_current_time", '{"timezone": "Asia/Tokyo"}')
    reply = store.add_message(cid, "assistant", "", tool_steps=[ToolStep(call, server="time")])
    view = _view(qtbot, model)
    view.sync()
    with qtbot.waitSignal(model.reply_started):
        _card(view, reply.id).deny.click()
    assert store.message(reply.id).tool_steps[0].state is StepState.DENIED
    assert _tool_turn(client)["content"] == DENIED_TEXT  # the model is told, and goes on
    assert _card(view, reply.id).state.text() == "Denied"
    _answer(qtbot, model, client, "I may not look it up.")
    assert model.messages()[-1].content == "I may not look it up."


@pytest.mark.slow  # starts mcp-server-time
def test_allow_once_runs_the_call_off_the_gui_thread_and_follows_up(
        qtbot: QtBot, chat: tuple[ChatViewModel, Any]) -> None:
    model, client = chat
    _with_tools(model, TIME, required=True)
    view = _view(qtbot, model)
    reply = _asked(qtbot, model, client, "What time is it in Tokyo?", TOKYO)
    first = client.sampling[-1]
    assert first is not None and "get_current_time" in first.json_schema  # a call, by grammar
    assert reply.tool_steps[0].state is StepState.PENDING and reply.content == ""
    card = _card(view, reply.id)
    assert card.buttons.isVisible() and "Asia/Tokyo" in card.arguments.text()
    requests = len(client.requests)
    card.allow_once.click()
    assert card.state.text() == "Running…"  # the call runs in the background
    qtbot.waitUntil(lambda: len(client.requests) > requests, timeout=60_000)
    step = model.store.message(reply.id).tool_steps[0]
    assert step.state is StepState.RAN and json.loads(step.result)["timezone"] == "Asia/Tokyo"
    assert json.loads(_tool_turn(client)["content"])["timezone"] == "Asia/Tokyo"
    after = client.sampling[-1]
    assert after is not None and not after.json_schema  # after the call, the model chooses
    assert _card(view, reply.id).state.text() == "Done"
    assert "Asia/Tokyo" in _card(view, reply.id).result.toPlainText()
    _answer(qtbot, model, client, "It is evening in Tokyo.")
    assert model.messages()[-1].content == "It is evening in Tokyo."
    assert model.tools.toolbox is not None  # running while its conversation is open
    model.new_conversation()
    qtbot.waitUntil(lambda: model.tools.toolbox is None)


@pytest.mark.slow  # starts mcp-server-time
def test_always_skips_asking_for_the_next_call_of_that_tool(
        qtbot: QtBot, chat: tuple[ChatViewModel, Any]) -> None:
    model, client = chat
    _with_tools(model, TIME)
    view = _view(qtbot, model)
    first = _asked(qtbot, model, client, "Time in Tokyo?", TOKYO)
    requests = len(client.requests)
    _card(view, first.id).allow_always.click()
    qtbot.waitUntil(lambda: len(client.requests) > requests, timeout=60_000)
    # The model calls the same tool again: it runs without a question.
    again = TOKYO.replace("Asia/Tokyo", "Europe/Paris")
    second = _answer(qtbot, model, client, again)
    assert second.id != first.id and second.tool_steps
    requests = len(client.requests)
    qtbot.waitUntil(lambda: len(client.requests) > requests, timeout=60_000)
    step = model.store.message(second.id).tool_steps[0]
    assert step.state is StepState.RAN and "Europe/Paris" in step.result
    assert not _card(view, second.id).buttons.isVisible()


@pytest.mark.slow  # starts an MCP server
def test_a_failing_tool_gives_a_failed_card_and_the_conversation_goes_on(
        qtbot: QtBot, chat: tuple[ChatViewModel, Any]) -> None:
    model, client = chat
    _with_tools(model, HOSTILE, name="hostile")
    view = _view(qtbot, model)
    calls = '<tool_call>{"name": "boom", "arguments": {}}</tool_call>' \
        '<tool_call>{"name": "markup", "arguments": {}}</tool_call>'
    reply = _asked(qtbot, model, client, "Try both", calls)
    assert [s.call.name for s in reply.tool_steps] == ["boom", "markup"]
    requests = len(client.requests)
    _card(view, reply.id, 0).allow_once.click()
    qtbot.waitUntil(lambda: model.store.message(reply.id).tool_steps[0].state
                    is StepState.FAILED, timeout=60_000)
    assert len(client.requests) == requests  # one call is still undecided: no follow-up
    assert _card(view, reply.id, 0).state.text() == "Failed"
    assert "Error executing tool boom" in _card(view, reply.id, 0).result.toPlainText()
    _card(view, reply.id, 1).allow_once.click()
    qtbot.waitUntil(lambda: len(client.requests) > requests, timeout=60_000)
    markup = _card(view, reply.id, 1).result.toPlainText()
    assert "<script>alert(1)</script>" in markup  # kept as text, not run as markup
    assert _tool_turn(client)["content"].startswith("<b>bold</b>")
    assert any(m["role"] == "tool" and m["content"].startswith("The tool failed")
               for m in client.requests[-1][1])


# ------------------------------------------------------------- stopping


def _calls_alive() -> bool:
    return any(t.name == "mcp-call" and t.is_alive() for t in threading.enumerate())


def _running_hang(qtbot: QtBot, chat: ChatViewModel, client: RecordingClient,
                  view: ConversationView) -> Message:
    """A reply that calls ``hang`` (never returns), allowed and running."""
    reply = _asked(qtbot, chat, client, "Wait for it", HANG)
    _card(view, reply.id).allow_once.click()
    assert _calls_alive() and _card(view, reply.id).state.text() == "Running…"
    return reply


@pytest.mark.slow  # starts an MCP server
def test_stop_on_a_running_card_ends_the_call_and_the_model_is_told(
        qtbot: QtBot, chat: tuple[ChatViewModel, Any]) -> None:
    model, client = chat
    _with_tools(model, HOSTILE, name="hostile")
    view = _view(qtbot, model)
    reply = _running_hang(qtbot, model, client, view)
    card = _card(view, reply.id)
    assert card.stop.isVisible() and not card.allow_once.isVisible()
    requests = len(client.requests)
    card.stop.click()
    qtbot.waitUntil(lambda: not _calls_alive(), timeout=5_000)  # the deadline is 60 s
    step = model.store.message(reply.id).tool_steps[0]
    assert step.state is StepState.STOPPED
    assert card.state.text() == "Stopped" and not card.stop.isVisible()
    assert "Stopped by you" in card.note.text()
    qtbot.waitUntil(lambda: len(client.requests) > requests, timeout=5_000)
    assert _tool_turn(client)["content"] == STOPPED_TEXT  # told, in words, and goes on
    # The same server answers the model's next call, and the person writes on.
    again = _answer(qtbot, model, client,
                    '<tool_call>{"name": "markup", "arguments": {}}</tool_call>')
    requests = len(client.requests)
    _card(view, again.id).allow_once.click()
    qtbot.waitUntil(lambda: len(client.requests) > requests, timeout=30_000)
    assert model.store.message(again.id).tool_steps[0].state is StepState.RAN
    _answer(qtbot, model, client, "Done waiting.")
    assert model.send("Thanks") is not None and client.requests[-1][1][-1]["content"] == "Thanks"


@pytest.mark.slow  # starts an MCP server
def test_the_windows_stop_ends_running_calls_and_the_conversation_waits(
        qtbot: QtBot, chat: tuple[ChatViewModel, Any]) -> None:
    model, client = chat
    _with_tools(model, HOSTILE, name="hostile")
    view = _view(qtbot, model)
    composer = Composer(model)
    qtbot.addWidget(composer)
    composer.show()
    reply = _running_hang(qtbot, model, client, view)
    assert composer.button is composer.stop_button and composer.stop_button.isVisible()
    requests = len(client.requests)
    composer.stop_button.click()  # Esc calls the same ChatViewModel.stop
    qtbot.waitUntil(lambda: not _calls_alive(), timeout=5_000)
    assert model.store.message(reply.id).tool_steps[0].state is StepState.STOPPED
    assert _card(view, reply.id).state.text() == "Stopped"
    assert composer.send_button.isVisible() and not model.busy
    assert len(client.requests) == requests  # the model is not asked on: it waits for you
    composer.editor.setPlainText("Never mind, what is 2 + 2?")
    composer.send_button.click()
    assert len(client.requests) == requests + 1 and composer.editor.toPlainText() == ""
    assert client.requests[-1][1][-1]["content"] == "Never mind, what is 2 + 2?"
    assert _tool_turn(client)["content"] == STOPPED_TEXT  # read with the stopped call


# ------------------------------------------------- the servers' start


@pytest.mark.slow  # starts an MCP server
def test_the_message_shows_at_once_while_the_servers_start(
        qtbot: QtBot, chat: tuple[ChatViewModel, Any], tmp_path: Path) -> None:
    model, client = chat
    gate = tmp_path / "answer-now"  # the server answers its handshake once this exists
    cid = _with_tools(model, f"{shlex.quote(sys.executable)} "
                             f"{shlex.quote(str(HOSTILE_SCRIPT))} wait {shlex.quote(str(gate))}",
                      name="slow")
    view = _view(qtbot, model)
    composer = Composer(model)
    qtbot.addWidget(composer)
    composer.show()
    composer.editor.setPlainText("What time is it?")
    composer.send_button.click()
    assert model.tools.starting == cid and not client.requests  # still starting
    shown = [w for w in view.widgets.values() if w.role == "user"]
    assert [w.text() for w in shown] == ["What time is it?"] and shown[0].isVisible()
    assert view.stream_widget is not None
    assert view.stream_widget.footer.text() == "Starting this conversation's tools…"
    assert composer.editor.toPlainText() == "" and composer.button is composer.stop_button
    gate.touch()
    qtbot.waitUntil(lambda: bool(client.requests), timeout=60_000)
    assert client.requests[0][2], "asked with the tools, once they ran"
    assert [m.content for m in model.messages()] == ["What time is it?"]  # stored once
    assert client.requests[0][1][-1]["content"] == "What time is it?"
