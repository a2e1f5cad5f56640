"""An imported reply says where it came from, not that the model loaded here wrote it
(seen in the window: ChatGPT's replies were headed with the local model's name). The
model a file names is a stranger's text: shown plain, short, without control marks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.chat.importer import import_into, read_conversations
from app.workspace import Workspace
from tests.chat_widgets import shown_messages
from ui.chat.chat_view_model import ChatViewModel, ModelState
from ui.chat.conversation_view import ConversationView
from ui.chat.inference_bridge import InferenceBridge
from ui.chat.message_widget import MessageWidget

HOSTILE_MODEL = "<b>gpt</b>\u202e-evil"


def _node(nid: str, parent: str | None, role: str, text: str, slug: str | None = None
          ) -> dict:
    metadata = {"model_slug": slug} if slug else {}
    return {"id": nid, "parent": parent, "children": [], "message": {
        "author": {"role": role}, "metadata": metadata,
        "content": {"content_type": "text", "parts": [text]}}}


def _chatgpt(path: Path) -> Path:
    mapping = {n["id"]: n for n in (
        _node("u1", None, "user", "Name a colour"),
        _node("a1", "u1", "assistant", "Blue", slug="gpt-4o"),
        _node("u2", "a1", "user", "Why?"),
        _node("a2", "u2", "assistant", "It is calm."),  # no slug: the conversation's
        _node("u3", "a2", "user", "And?"),
        _node("a3", "u3", "assistant", "That is all.", slug=HOSTILE_MODEL))}
    path.write_text(json.dumps([{"title": "Colours", "mapping": mapping,
                                 "current_node": "a3", "default_model_slug": "gpt-4"}]),
                    "utf-8")
    return path


@pytest.fixture
def view(qtbot: QtBot, workspace: Workspace) -> Iterator[ConversationView]:
    chat = ChatViewModel(workspace, InferenceBridge())
    chat.model_name, chat.state = "local-model", ModelState.READY
    widget = ConversationView(chat)
    widget.resize(640, 700)
    qtbot.addWidget(widget)
    widget.show()
    yield widget
    widget.shutdown()
    chat.shutdown()


def _heads(qtbot: QtBot, view: ConversationView, n: int) -> list[str]:
    def shown() -> list[MessageWidget]:
        return shown_messages(view)
    qtbot.waitUntil(lambda: len(shown()) == n, timeout=5000)
    return [w.role_label.text() for w in shown()]


def test_imported_chatgpt_replies_name_the_import_not_the_local_model(
        qtbot: QtBot, workspace: Workspace, view: ConversationView, tmp_path: Path) -> None:
    (cid,) = import_into(workspace.store, read_conversations(_chatgpt(tmp_path / "c.json")))
    view.chat.open_conversation(cid)
    heads = _heads(qtbot, view, 6)
    assert heads[:5] == ["You", "gpt-4o (imported from ChatGPT)", "You",
                         "gpt-4 (imported from ChatGPT)", "You"]
    # The file's name for a model is text: no markup acts, no bidi mark reorders it.
    assert heads[5] == "<b>gpt</b>-evil (imported from ChatGPT)"
    widget = shown_messages(view)[5]
    assert widget.role_label.textFormat() == Qt.TextFormat.PlainText
    assert "local-model" not in " ".join(heads)
    view.grab().save(str(tmp_path / "imported.png"))


def test_a_reply_written_here_later_is_headed_by_the_local_model(
        qtbot: QtBot, workspace: Workspace, view: ConversationView, tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"conversations": [{"from": "human", "value": "2+2?"},
                                                  {"from": "gpt", "value": "4"}]}) + "\n",
                    "utf-8")
    (cid,) = import_into(workspace.store, read_conversations(path))
    workspace.store.add_message(cid, "user", "And 3+3?")
    workspace.store.add_message(cid, "assistant", "6", stats={"model": "local-model"})
    view.chat.open_conversation(cid)
    assert _heads(qtbot, view, 4) == ["You", "Imported from ShareGPT", "You", "local-model"]
