"""Importing conversations (issue 15, item 5): OpenAI/ShareGPT JSONL, ChatGPT's
conversations.json, Open WebUI's export and Hearth's own, with line-numbered errors;
imported text is stored and shown as text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.chat.conversations import model_messages
from app.chat.export import write_export
from app.chat.importer import ConversationImportError, import_into, read_conversations
from app.workspace import Workspace


def _write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data), "utf-8")
    return path


def _shown(workspace: Workspace, cid: int) -> list[tuple[str, str]]:
    return [(m.role, m.content) for m in workspace.store.messages(cid)]


def test_openai_and_sharegpt_jsonl_with_line_numbered_errors(
        workspace: Workspace, tmp_path: Path) -> None:
    lines = [
        json.dumps({"messages": [{"role": "system", "content": "Be brief."},
                                 {"role": "user", "content": "Hi"},
                                 {"role": "assistant", "content": "Hello!"}]}),
        "",
        json.dumps({"conversations": [{"from": "human", "value": "2+2?"},
                                      {"from": "gpt", "value": "4"}]}),
        "{not json",
        json.dumps({"messages": [{"role": "wizard", "content": "?"}]}),
        json.dumps({"prompt": "no chat here"}),
    ]
    path = tmp_path / "chats.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    result = read_conversations(path)
    assert len(result.conversations) == 2
    assert result.problems[0].startswith("Line 4 of chats.jsonl: not JSON")
    assert result.problems[1].startswith("Line 5 of chats.jsonl: message 1 has role 'wizard'")
    assert result.problems[2].startswith("Line 6 of chats.jsonl: no 'messages'")
    first, second = import_into(workspace.store, result)
    assert workspace.store.get(first).system_prompt == "Be brief."
    assert _shown(workspace, first) == [("user", "Hi"), ("assistant", "Hello!")]
    assert workspace.store.get(second).title == "2+2?"
    assert _shown(workspace, second) == [("user", "2+2?"), ("assistant", "4")]


def test_chatgpt_export_follows_the_branch_that_was_shown(workspace: Workspace,
                                                           tmp_path: Path) -> None:
    def node(nid: str, parent: str | None, role: str | None, text: str = "") -> dict:
        message = None if role is None else {
            "author": {"role": role}, "content": {"content_type": "text", "parts": [text]}}
        return {"id": nid, "parent": parent, "message": message, "children": []}

    mapping = {n["id"]: n for n in (
        node("root", None, None), node("s", "root", "system", ""),
        node("u1", "s", "user", "Name a colour"), node("a1", "u1", "assistant", "Red"),
        node("a2", "u1", "assistant", "Blue"), node("u2", "a2", "user", "Why?"),
        node("a3", "u2", "assistant", "It is calm."))}
    path = _write(tmp_path / "conversations.json",
                  [{"title": "Colours", "mapping": mapping, "current_node": "a3"}])
    (cid,) = import_into(workspace.store, read_conversations(path))
    assert workspace.store.get(cid).title == "Colours"
    assert _shown(workspace, cid) == [("user", "Name a colour"), ("assistant", "Blue"),
                                      ("user", "Why?"), ("assistant", "It is calm.")]


def test_open_webui_export(workspace: Workspace, tmp_path: Path) -> None:
    history = {"currentId": "b", "messages": {
        "a": {"id": "a", "parentId": None, "role": "user", "content": "Hola"},
        "b": {"id": "b", "parentId": "a", "role": "assistant", "content": "¡Hola!"}}}
    path = _write(tmp_path / "webui.json",
                  [{"id": "x", "title": "Spanish", "chat": {"title": "Spanish",
                                                            "history": history}},
                   {"id": "y", "chat": {"messages": [{"role": "user", "content": "Only"},
                                                     {"role": "assistant", "content": "Me"}]}}])
    ids = import_into(workspace.store, read_conversations(path))
    assert _shown(workspace, ids[0]) == [("user", "Hola"), ("assistant", "¡Hola!")]
    assert _shown(workspace, ids[1]) == [("user", "Only"), ("assistant", "Me")]


def test_hearths_own_export_round_trips(workspace: Workspace, tmp_path: Path) -> None:
    store = workspace.store
    original = store.create(title="Round trip", model="tiny", system_prompt="Be kind.")
    store.add_message(original.id, "user", "Hello")
    store.add_message(original.id, "assistant", "Hi there")
    path = write_export(tmp_path / "out.json", store.get(original.id),
                        store.messages(original.id))
    (cid,) = import_into(store, read_conversations(path))
    again = store.get(cid)
    assert again.model == "tiny" and again.system_prompt == "Be kind."
    assert model_messages(again, store.messages(cid)) == model_messages(
        store.get(original.id), store.messages(original.id))


def test_imported_text_is_kept_as_text(workspace: Workspace, tmp_path: Path) -> None:
    hostile = "<img src=/dev/zero> ![x](/etc/passwd) <script>alert(1)</script>"
    path = _write(tmp_path / "h.json", {"title": hostile, "messages": [
        {"role": "user", "content": hostile}, {"role": "assistant", "content": hostile}]})
    (cid,) = import_into(workspace.store, read_conversations(path))
    assert workspace.store.get(cid).title == hostile
    assert _shown(workspace, cid) == [("user", hostile), ("assistant", hostile)]


def test_a_file_with_nothing_usable_says_why(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": []}\n[1, 2]\n', "utf-8")
    with pytest.raises(ConversationImportError, match="Line 1 of bad.jsonl: it has no "
                                                      "messages"):
        read_conversations(path)
    binary = tmp_path / "model.gguf"
    binary.write_bytes(b"GGUF\xff\xfe\x00")
    with pytest.raises(ConversationImportError, match="not UTF-8"):
        read_conversations(binary)


def test_import_from_the_file_menu(qtbot, workspace: Workspace, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from PySide6.QtWidgets import QFileDialog

    from tests.chat_widgets import shown_messages
    from ui.chat.message_widget import MessageWidget
    from ui.main_window import MainWindow

    hostile = "<b>bold?</b> ![x](/dev/zero)"
    path = tmp_path / "chats.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": hostile}]})
                    + "\n{oops\n", "utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileName",
                        staticmethod(lambda *a, **k: (str(path), "")))
    window = MainWindow(workspace)
    qtbot.addWidget(window)
    window.show()
    try:
        with qtbot.waitSignal(window.menus.importer.finished, timeout=10_000) as done:
            window.menus.import_chats.trigger()
        summary, problems = done.args
        assert summary == "Imported 1 conversation from chats.jsonl; 1 entry skipped"
        assert problems[0].startswith("Line 2 of chats.jsonl: not JSON")
        assert window.statusBar().currentMessage() == summary
        box = window.menus.importer.box
        assert box is not None and "Line 2 of chats.jsonl" in box.text()
        box.close()
        assert window.chat.conversation is not None
        assert window.chat.conversation.title == "Hi"

        def reply() -> MessageWidget | None:
            shown = [w for w in shown_messages(window.chat_page.view)
                     if w.role == "assistant"]
            return shown[0] if shown else None
        qtbot.waitUntil(lambda: reply() is not None, timeout=5000)
        assert "<b>bold?</b>" in reply().body.toPlainText()  # shown as the text it is
    finally:
        window.close()
