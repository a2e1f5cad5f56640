"""Settings > Tools and the chat's Tools settings (issue 26): servers are added and removed,
each one's tools (or why it did not start) are shown, and a conversation switches tools on
for itself; its servers start with its next message, off the GUI thread."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from app.tools.chat_settings import ToolSettings
from app.tools.servers import ServerEntry, ServerList
from app.workspace import Workspace
from ui.chat.chat_view_model import ChatViewModel, ModelState
from ui.chat.inference_bridge import InferenceBridge
from ui.chat.tools_box import ToolsBox
from ui.tools_dialog import ToolsDialog

MISSING = "no-such-mcp-server-xyz --flag"


@pytest.fixture
def dialog(qtbot: QtBot, workspace: Workspace) -> Iterator[ToolsDialog]:
    box = ToolsDialog(workspace)
    qtbot.addWidget(box)
    box.show()
    yield box
    box.shutdown()


@pytest.fixture
def chat(qtbot: QtBot, workspace: Workspace) -> Iterator[tuple[ChatViewModel, list[Any]]]:
    model = ChatViewModel(workspace, InferenceBridge())
    model.state = ModelState.READY
    asked: list[Any] = []
    model.client.chat = lambda messages, sampling=None, continue_last=False, tools="": (  # type: ignore[method-assign]
        asked.append((messages, sampling, tools)) or f"r{len(asked)}")
    model.client.cancel = lambda request_id: None  # type: ignore[method-assign]
    yield model, asked
    model.shutdown()


def _add(dialog: ToolsDialog, where: str, name: str = "") -> None:
    dialog.name.setText(name)
    dialog.where.setText(where)
    dialog.add_button.click()


def test_a_server_is_added_shown_and_removed(qtbot: QtBot, dialog: ToolsDialog,
                                             workspace: Workspace) -> None:
    _add(dialog, MISSING)
    assert [e.name for e in ServerList(workspace.home.root).entries()] == ["no-such-mcp-server-xyz"]
    assert dialog.selected() == "no-such-mcp-server-xyz" and not dialog.error.isVisible()
    # It is started briefly, off the GUI thread, to show its tools: this one cannot start.
    qtbot.waitUntil(lambda: dialog.tools.toPlainText().startswith("It did not start"),
                    timeout=30_000)
    assert "could not start" in dialog.tools.toPlainText()
    _add(dialog, MISSING, name="no-such-mcp-server-xyz")
    assert "already an MCP server named" in dialog.error.text()
    _add(dialog, "http://example.com/mcp", name="far")
    assert "only local URLs" in dialog.error.text()
    _add(dialog, "http://127.0.0.1:9/mcp")
    assert "give a server at a URL a name" in dialog.error.text()
    dialog.remove_button.click()
    assert ServerList(workspace.home.root).entries() == []
    assert dialog.list.count() == 0 and not dialog.remove_button.isEnabled()


@pytest.mark.slow  # starts mcp-server-time
def test_a_servers_tools_are_listed(qtbot: QtBot, dialog: ToolsDialog) -> None:
    _add(dialog, "python -m mcp_server_time --local-timezone UTC", name="time")
    qtbot.waitUntil(lambda: dialog.tools.toPlainText().startswith("2 tools"), timeout=60_000)
    assert "• get_current_time: " in dialog.tools.toPlainText()


def test_a_conversation_switches_tools_on_for_itself(qtbot: QtBot,
                                                     chat: tuple[ChatViewModel, Any]) -> None:
    model, _asked = chat
    ServerList(model.workspace.home.root).add(ServerEntry("time", "python -m mcp_server_time"))
    box = ToolsBox(model)
    qtbot.addWidget(box)
    assert not box.checks["time"].isChecked() and box.status.text().startswith("Tools are off")
    box.checks["time"].setChecked(True)  # none open yet: this starts one, as a message would
    first = model.conversation_id
    assert first is not None and box.checks["time"].isChecked()
    box.max_rounds.setValue(2)
    box.required.setChecked(True)
    assert model.tools.settings_of(first) == ToolSettings(("time",), 2, True)
    assert "start with your next message" in box.status.text()
    model.store.create()  # another conversation keeps its own (off)
    second = model.store.list()[0].id
    model.open_conversation(second)
    assert not box.checks["time"].isChecked() and not model.tools.settings_of(second).on
    model.open_conversation(first)
    assert box.checks["time"].isChecked() and box.required.isChecked()


def test_a_server_that_cannot_start_is_named_and_the_message_still_goes(
        qtbot: QtBot, chat: tuple[ChatViewModel, Any]) -> None:
    model, asked = chat
    ServerList(model.workspace.home.root).add(ServerEntry("gone", MISSING))
    cid = model.new_conversation()
    model.tools.set_settings(cid, ToolSettings(("gone",)))
    held = model.send("What time is it?")
    assert held is not None and held.request_id == "" and model.busy and not asked
    qtbot.waitUntil(lambda: bool(asked), timeout=30_000)
    assert model.reply is not None and model.reply.request_id == "r1"
    assert asked[0][2] == ""  # no tools to offer: asked without them
    assert "could not start" in model.tools.status(cid)


def test_stop_while_the_servers_start_asks_nothing_and_keeps_the_message(
        qtbot: QtBot, chat: tuple[ChatViewModel, Any]) -> None:
    model, asked = chat
    ServerList(model.workspace.home.root).add(ServerEntry("gone", MISSING))
    cid = model.new_conversation()
    model.tools.set_settings(cid, ToolSettings(("gone",)))
    model.send("What time is it?")
    with qtbot.waitSignal(model.reply_finished):
        model.stop()
    assert not model.busy
    qtbot.waitUntil(lambda: model.tools.starting is None, timeout=30_000)
    assert not asked  # the conversation waits for the person, their message kept
    assert [m.content for m in model.messages()] == ["What time is it?"]
