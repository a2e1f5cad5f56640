"""*Correct this* on a reply that called a tool, in the window (issue 26 item 5): the
editor offers the conversation's tools with the model's call filled in, says inline what
is wrong with the arguments, and the saved correction is listed written out.

The model is the recording stand-in of test_chat_tools; the MCP server is the real
mcp-server-time from PyPI."""

from __future__ import annotations

import json

import pytest
from pytestqt.qtbot import QtBot

from app.workspace import Workspace
from tests.test_chat_tools import TIME, RecordingClient, _asked, _with_tools
from ui.chat.chat_view_model import ModelState
from ui.datasets.datasets_view import CorrectReplyDialog
from ui.main_window import MainWindow

UTC = '<tool_call>{"name": "get_current_time", "arguments": {"timezone": "UTC"}}</tool_call>'


def test_correct_this_on_a_call_saves_the_call_it_should_have_made(
        qtbot: QtBot, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    window = MainWindow(workspace)
    qtbot.addWidget(window)
    window.show()
    client = RecordingClient()
    window.chat.state = ModelState.READY
    window.chat.client.chat = client.chat  # type: ignore[method-assign]
    window.chat.client.cancel = client.cancel  # type: ignore[method-assign]
    try:
        _with_tools(window.chat, TIME)
        reply = _asked(qtbot, window.chat, client, "What time is it in Tokyo?", UTC)
        widget = window.chat_page.view.widgets[reply.id]
        assert reply.content == "" and widget.correct_button.isVisible()
        seen: list[str] = []

        def fill_and_save(dialog: CorrectReplyDialog) -> int:
            editor = dialog.call_editor
            assert editor is not None
            assert editor.tool.currentText() == "get_current_time"
            assert json.loads(editor.arguments.toPlainText()) == {"timezone": "UTC"}
            assert 'get_current_time(timezone="UTC")' in dialog.original_view.toPlainText()
            dialog._on_save()  # unchanged: refused, saying why
            seen.append(dialog.error.text())
            editor.arguments.setPlainText('{"zone": "Asia/Tokyo"}')
            dialog._on_save()  # the schema's own complaint, inline
            seen.append(dialog.error.text())
            editor.arguments.setPlainText('{"timezone": "Asia/Tokyo"}')
            dialog._on_save()
            return dialog.result()

        monkeypatch.setattr(CorrectReplyDialog, "exec", fill_and_save)
        widget.correct_button.click()
        assert "same as the original" in seen[0]
        assert "'timezone' is a required property" in seen[1]
        [example] = window.corrections.list()
        assert example.shown == 'get_current_time(timezone="Asia/Tokyo")'
        assert "get_current_time" in [t["function"]["name"] for t in json.loads(example.tools)]
        assert window.datasets_view.list.count() == 1
        assert window.datasets_view.list.item(0).text().endswith(
            '→ get_current_time(timezone="Asia/Tokyo")')
        window.datasets_view.list.setCurrentRow(0)
        assert window.datasets_view.rejected_view.toPlainText() == \
            'get_current_time(timezone="UTC")'
    finally:
        window.close()
