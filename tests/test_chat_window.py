"""The chat window, driven like a person would, with the real worker and starter model:
a conversation. Send and stream, Stop, Regenerate and its versions, edit and resend,
replies that land in their own conversation, the sidebar, dropped turns and shortcuts,
Correct this. When the worker fails, crashes or the app restarts:
tests/test_chat_window_recovery.py.

Each test builds a real MainWindow over a temporary home (``make_window``), types into
the composer, presses keys and buttons, waits on signals, and closes the window so no
worker outlives the test. Replies are short and greedy so the suite stays quick on two
CPU cores.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app.chat.conversations import CANCELLED
from app.inference import protocol as p
from app.workspace import Workspace
from tests.chat_window_driver import LONG, SHORT, prepare, send, shown, wait_reply
from tests.starter_window import WAIT_MS
from ui.chat.chat_view_model import ModelState
from ui.main_window import MainWindow

pytestmark = pytest.mark.slow


def test_send_streams_and_shows_stats(qtbot: QtBot, workspace: Workspace,
                                      make_window: Callable[..., MainWindow]) -> None:
    prepare(workspace)
    window = make_window(workspace)
    editor = window.chat_page.composer.editor
    editor.setFocus()
    qtbot.keyClicks(editor, "What is the capital")
    qtbot.keyClick(editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert window.chat.reply is None and "\n" in editor.toPlainText()  # Shift+Enter
    chunks: list[str] = []
    window.chat.reply_chunk.connect(lambda _rid, text, _n: chunks.append(text))
    qtbot.keyClicks(editor, "of France?")
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS) as finished:
        qtbot.keyClick(editor, Qt.Key.Key_Return)
        assert editor.toPlainText() == ""
        assert window.chat_page.composer.button.text() == "Stop"
    reply = finished.args[0]
    assert chunks and "".join(chunks) == reply.text  # streamed, coalesced, complete
    messages = workspace.store.messages(window.chat.conversation_id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].content == "What is the capital\nof France?"
    widgets = shown(window)
    assert [w.role for w in widgets] == ["user", "assistant"]
    assert widgets[1].body.toPlainText().strip() != ""
    assert "tok/s" in widgets[1].footer.text() and "to first token" in \
        widgets[1].footer.text()
    assert window.chat_page.composer.button.text() == "Send"
    # The sidebar lists the conversation under its first message.
    assert window.chat_page.sidebar.model.rows[0].title.startswith("What is the capital")


def test_escape_stops_a_reply(qtbot: QtBot, workspace: Workspace,
                              make_window: Callable[..., MainWindow]) -> None:
    prepare(workspace, LONG)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_chunk, timeout=WAIT_MS):
        send(qtbot, window, "Write a long story about a fox in a forest.")
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        qtbot.keyClick(window.chat_page.composer.editor, Qt.Key.Key_Escape)
    reply = workspace.store.messages(window.chat.conversation_id)[-1]
    assert reply.status == CANCELLED and reply.content
    assert reply.stats is not None and reply.stats["completion_tokens"] < LONG.max_tokens
    last = shown(window)[-1]
    assert "stopped" in last.footer.text()
    assert last.continue_button.isVisibleTo(window)


def test_regenerate_keeps_versions(qtbot: QtBot, workspace: Workspace,
                                   make_window: Callable[..., MainWindow]) -> None:
    name = prepare(workspace)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        send(qtbot, window, "Name a colour.")
    first = workspace.store.messages(window.chat.conversation_id)[-1].content
    # A different seed makes a different second version likely, but either way it is kept.
    workspace.settings.remember_sampling(name, p.SamplingParams(temperature=1.0, seed=7,
                                                                max_tokens=16))
    last = shown(window)[-1]
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        qtbot.mouseClick(last.regenerate_button, Qt.MouseButton.LeftButton)
    messages = workspace.store.messages(window.chat.conversation_id)
    assert len(messages) == 2 and messages[1].version_count == 2
    last = shown(window)[-1]
    assert last.version_label.text() == "2/2" and last.prev_button.isEnabled()
    qtbot.mouseClick(last.prev_button, Qt.MouseButton.LeftButton)
    last = shown(window)[-1]
    assert last.version_label.text() == "1/2"
    assert workspace.store.messages(window.chat.conversation_id)[1].content == first
    assert last.body.toPlainText().strip() == first.strip() or first.strip() in \
        last.body.toPlainText()


def test_edit_and_resend(qtbot: QtBot, workspace: Workspace,
                         make_window: Callable[..., MainWindow]) -> None:
    prepare(workspace)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        send(qtbot, window, "What is 2 + 2?")
    user = shown(window)[0]
    qtbot.mouseClick(user.edit_button, Qt.MouseButton.LeftButton)
    assert user.editor is not None and user.editor.toPlainText() == "What is 2 + 2?"
    user.editor.setPlainText("What is 3 + 3?")
    resend = next(b for b in user.findChildren(type(window.chat_page.composer.button))
                  if b.text() == "Send")
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        qtbot.mouseClick(resend, Qt.MouseButton.LeftButton)
    messages = workspace.store.messages(window.chat.conversation_id)
    assert [(m.role, m.position) for m in messages] == [("user", 0), ("assistant", 1)]
    assert messages[0].content == "What is 3 + 3?"
    assert shown(window)[0].body.toPlainText().strip() == "What is 3 + 3?"


def test_reply_lands_in_its_own_conversation(qtbot: QtBot, workspace: Workspace,
                                             make_window: Callable[..., MainWindow]
                                             ) -> None:
    prepare(workspace, p.SamplingParams(temperature=0.0, seed=1, max_tokens=48))
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_chunk, timeout=WAIT_MS):
        send(qtbot, window, "Tell me about the moon.")
    first = window.chat.conversation_id
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # Ctrl+N
    second = window.chat.conversation_id
    assert second != first and window.chat.busy
    assert shown(window) == []  # the new chat shows nothing of the other reply
    # One reply at a time: the composer offers Stop (for the other chat's reply), not Send.
    assert window.chat_page.composer.button.text() == "Stop"
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        pass
    assert workspace.store.messages(second) == []
    assert [m.role for m in workspace.store.messages(first)] == ["user", "assistant"]
    assert shown(window) == []
    # Back in the first conversation the finished reply is there, rendered.
    window.chat.open_conversation(first)
    assert [w.role for w in shown(window)] == ["user", "assistant"]


def test_sidebar_rename_search_export_delete(qtbot: QtBot, workspace: Workspace,
                                             make_window: Callable[..., MainWindow],
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = workspace.store
    keep = store.create(title="Pasta recipes")
    store.add_message(keep.id, "user", "How long to cook spaghetti?")
    store.add_message(keep.id, "assistant", "About **10 minutes**.\n\n```python\nprint(1)\n"
                      "```")
    other = store.create(title="Rust")
    window = make_window(workspace, start=False)
    sidebar = window.chat_page.sidebar
    qtbot.keyClicks(sidebar.search, "spaghetti")
    qtbot.waitUntil(lambda: [c.id for c in sidebar.model.rows] == [keep.id], timeout=3000)
    sidebar.search.clear()
    qtbot.waitUntil(lambda: len(sidebar.model.rows) == 2, timeout=3000)

    row = sidebar.model.row_of(keep.id)
    assert sidebar.model.setData(sidebar.model.index(row), "Italian cooking")
    assert store.get(keep.id).title == "Italian cooking"

    # Clicking a conversation opens it; its code block's Copy link copies the code.
    sidebar.list.setCurrentIndex(sidebar.model.index(sidebar.model.row_of(keep.id)))
    assert window.chat.conversation_id == keep.id
    body = shown(window)[-1].body
    assert body.code_blocks == ["print(1)"]
    body.anchorClicked.emit(QUrl("copy-code:0"))
    assert QGuiApplication.clipboard().text() == "print(1)"

    for suffix in ("md", "json"):
        target = tmp_path / f"out.{suffix}"
        monkeypatch.setattr(QFileDialog, "getSaveFileName",
                            staticmethod(lambda *a, t=target, **k: (str(t), "")))
        sidebar.export(keep.id, suffix)
        assert "spaghetti" in target.read_text("utf-8")

    def answer(label: str) -> None:
        def click() -> None:
            box = QApplication.activeModalWidget()
            assert isinstance(box, QMessageBox) and "Delete “" in box.text()
            qtbot.mouseClick(next(b for b in box.buttons() if b.text().endswith(label)),
                             Qt.MouseButton.LeftButton)
        QTimer.singleShot(50, click)

    answer("Cancel")
    assert not sidebar.confirm_delete(other.id)
    assert len(store.list()) == 2
    answer("Delete")
    assert sidebar.confirm_delete(keep.id)
    assert [c.id for c in store.list()] == [other.id]
    assert window.chat.conversation_id == other.id
    assert shown(window) == []


def test_dropped_turns_are_noted_and_shortcuts_work(
        qtbot: QtBot, workspace: Workspace, make_window: Callable[..., MainWindow]) -> None:
    name = prepare(workspace)
    store = workspace.store
    conversation = store.create(title="Long one", model=name)
    for i in range(6):  # ~2,400 tokens of history: more than a 1,024-token context
        store.add_message(conversation.id, "user" if i % 2 == 0 else "assistant",
                          f"Turn {i}. " + "The quick brown fox jumps over the lazy dog. " * 40)
    store.add_message(conversation.id, "user", "Thanks!")
    store.add_message(conversation.id, "assistant", "You are welcome.")
    window = make_window(workspace)
    window.chat.open_conversation(conversation.id)
    qtbot.keyClick(window, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)  # Ctrl+L
    assert window.chat_page.composer.editor.hasFocus()
    with qtbot.waitSignal(window.chat.context_trimmed, timeout=WAIT_MS) as trimmed:
        send(qtbot, window, "Summarise our chat in one line.")
    dropped = trimmed.args[1]
    assert dropped >= 2
    wait_reply(qtbot, window)
    reply = store.messages(conversation.id)[-1]
    assert reply.stats is not None and reply.stats["dropped_messages"] == dropped
    note = shown(window)[-1].note
    assert note.isVisibleTo(window) and f"{dropped} earlier messages were left out" in \
        note.text()


def test_chat_with_model_switches_to_a_fresh_chat(
        qtbot: QtBot, workspace: Workspace, make_window: Callable[..., MainWindow]) -> None:
    name = prepare(workspace)
    old = workspace.store.create(title="Older")
    workspace.store.add_message(old.id, "user", "hi")
    window = make_window(workspace, start=False)
    assert window.chat.conversation_id == old.id
    window.chat_with_model(name)
    assert window.tabs.currentWidget() is window.chat_page
    assert window.chat.conversation_id != old.id and window.chat.messages() == []
    qtbot.waitUntil(lambda: window.chat.state == ModelState.READY, timeout=WAIT_MS)
    assert window.chat_page.model_bar.picker.currentData() == name
    assert "Ready" in window.chat_page.model_bar.state.text()


def test_deleting_the_streaming_conversation_stops_its_reply(
        qtbot: QtBot, workspace: Workspace, make_window: Callable[..., MainWindow]) -> None:
    prepare(workspace, LONG)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_chunk, timeout=WAIT_MS):
        send(qtbot, window, "Write a long story about a fox in a forest.")
    doomed = window.chat.conversation_id
    with qtbot.waitSignal(window.chat.reply_finished, timeout=5000):
        window.chat.delete(doomed)
    assert not window.chat.busy and window.chat_page.composer.button.text() == "Send"
    assert all(c.id != doomed for c in workspace.store.list())
    workspace.settings.remember_sampling(window.chat.model_name or "", SHORT)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        send(qtbot, window, "Hello again")
    assert [m.role for m in workspace.store.messages(window.chat.conversation_id)] == [
        "user", "assistant"]


def test_correct_this_collects_a_training_example(qtbot: QtBot, workspace: Workspace,
                                                  make_window: Callable[..., MainWindow],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.datasets.datasets_view import CorrectReplyDialog

    prepare(workspace)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        send(qtbot, window, "What is the capital of Zorbania?")
    reply = shown(window)[-1]
    assert reply.role == "assistant" and reply.correct_button.isVisible()

    def fill_and_save(dialog: CorrectReplyDialog) -> int:
        dialog.editor.setPlainText("The capital of Zorbania is Quillport.")
        dialog._on_save()
        return dialog.result()

    monkeypatch.setattr(CorrectReplyDialog, "exec", fill_and_save)
    reply.correct_button.click()
    examples = window.corrections.list()
    assert len(examples) == 1
    assert examples[0].corrected == "The capital of Zorbania is Quillport."
    assert examples[0].rejected == reply.message.content
    assert examples[0].prompt[-1] == {"role": "user",
                                      "content": "What is the capital of Zorbania?"}
    assert window.datasets_view.count_label.text() == "1 correction collected"
    assert "Saved as a training example" in window.statusBar().currentMessage()
