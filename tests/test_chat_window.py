"""The chat window, driven like a person would, with the real worker and starter model.

Each test builds a real MainWindow over a temporary home, types into the composer,
presses keys and buttons, waits on signals, and closes the window so no worker outlives
the test. Replies are short and greedy so the suite stays quick on two CPU cores.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QByteArray, Qt, QTimer, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QFileDialog, QMessageBox
from pytestqt.qtbot import QtBot

from app.chat.conversations import CANCELLED, INTERRUPTED
from app.inference import protocol as p
from app.settings import LoadSettings
from app.workspace import Workspace, open_workspace
from tests.chat_widgets import shown_messages
from tests.gguf_factory import write_tiny_gguf
from ui.chat.chat_view_model import ModelState
from ui.chat.message_widget import MessageWidget
from ui.main_window import MainWindow

pytestmark = pytest.mark.slow

SHORT = p.SamplingParams(temperature=0.0, seed=1, max_tokens=16)
LONG = p.SamplingParams(temperature=0.0, seed=1, max_tokens=600)
WAIT_MS = 180_000  # generous: the CI box may be busy with other work


def _prepare(workspace: Workspace, sampling: p.SamplingParams = SHORT) -> str:
    record = workspace.library.ensure_starter()
    assert record is not None, "the starter model is not installed"
    workspace.settings.load = LoadSettings(n_ctx=1024, n_threads=2)
    workspace.settings.remember_sampling(record.name, sampling)
    return record.name


@pytest.fixture
def make_window(qtbot: QtBot, starter_gguf: Path) -> Iterator[Callable[..., MainWindow]]:
    windows: list[MainWindow] = []

    def make(workspace: Workspace, start: bool = True) -> MainWindow:
        window = MainWindow(workspace)
        qtbot.addWidget(window)
        window.show()
        windows.append(window)
        if start:
            window.start()
            qtbot.waitUntil(lambda: window.chat.state == ModelState.READY, timeout=WAIT_MS)
        return window

    yield make
    for window in windows:
        window.close()
        assert not window.bridge.client.alive, "a worker outlived its window"


def _send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    editor = window.chat_page.composer.editor
    editor.setFocus()
    editor.setPlainText(text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)


def _wait_reply(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.chat.reply is None, timeout=WAIT_MS)


def _widgets(window: MainWindow) -> list[MessageWidget]:
    return shown_messages(window.chat_page.view)


def test_send_streams_and_shows_stats(qtbot: QtBot, workspace: Workspace,
                                      make_window: Callable[..., MainWindow]) -> None:
    _prepare(workspace)
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
    widgets = _widgets(window)
    assert [w.role for w in widgets] == ["user", "assistant"]
    assert widgets[1].body.toPlainText().strip() != ""
    assert "tok/s" in widgets[1].footer.text() and "to first token" in \
        widgets[1].footer.text()
    assert window.chat_page.composer.button.text() == "Send"
    # The sidebar lists the conversation under its first message.
    assert window.chat_page.sidebar.model.rows[0].title.startswith("What is the capital")


def test_escape_stops_a_reply(qtbot: QtBot, workspace: Workspace,
                              make_window: Callable[..., MainWindow]) -> None:
    _prepare(workspace, LONG)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_chunk, timeout=WAIT_MS):
        _send(qtbot, window, "Write a long story about a fox in a forest.")
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        qtbot.keyClick(window.chat_page.composer.editor, Qt.Key.Key_Escape)
    reply = workspace.store.messages(window.chat.conversation_id)[-1]
    assert reply.status == CANCELLED and reply.content
    assert reply.stats is not None and reply.stats["completion_tokens"] < LONG.max_tokens
    last = _widgets(window)[-1]
    assert "stopped" in last.footer.text()
    assert last.continue_button.isVisibleTo(window)


def test_regenerate_keeps_versions(qtbot: QtBot, workspace: Workspace,
                                   make_window: Callable[..., MainWindow]) -> None:
    name = _prepare(workspace)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        _send(qtbot, window, "Name a colour.")
    first = workspace.store.messages(window.chat.conversation_id)[-1].content
    # A different seed makes a different second version likely, but either way it is kept.
    workspace.settings.remember_sampling(name, p.SamplingParams(temperature=1.0, seed=7,
                                                                max_tokens=16))
    last = _widgets(window)[-1]
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        qtbot.mouseClick(last.regenerate_button, Qt.MouseButton.LeftButton)
    messages = workspace.store.messages(window.chat.conversation_id)
    assert len(messages) == 2 and messages[1].version_count == 2
    last = _widgets(window)[-1]
    assert last.version_label.text() == "2/2" and last.prev_button.isEnabled()
    qtbot.mouseClick(last.prev_button, Qt.MouseButton.LeftButton)
    last = _widgets(window)[-1]
    assert last.version_label.text() == "1/2"
    assert workspace.store.messages(window.chat.conversation_id)[1].content == first
    assert last.body.toPlainText().strip() == first.strip() or first.strip() in \
        last.body.toPlainText()


def test_edit_and_resend(qtbot: QtBot, workspace: Workspace,
                         make_window: Callable[..., MainWindow]) -> None:
    _prepare(workspace)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        _send(qtbot, window, "What is 2 + 2?")
    user = _widgets(window)[0]
    qtbot.mouseClick(user.edit_button, Qt.MouseButton.LeftButton)
    assert user.editor is not None and user.editor.toPlainText() == "What is 2 + 2?"
    user.editor.setPlainText("What is 3 + 3?")
    send = next(b for b in user.findChildren(type(window.chat_page.composer.button))
                if b.text() == "Send")
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        qtbot.mouseClick(send, Qt.MouseButton.LeftButton)
    messages = workspace.store.messages(window.chat.conversation_id)
    assert [(m.role, m.position) for m in messages] == [("user", 0), ("assistant", 1)]
    assert messages[0].content == "What is 3 + 3?"
    assert _widgets(window)[0].body.toPlainText().strip() == "What is 3 + 3?"


def test_reply_lands_in_its_own_conversation(qtbot: QtBot, workspace: Workspace,
                                             make_window: Callable[..., MainWindow]
                                             ) -> None:
    _prepare(workspace, p.SamplingParams(temperature=0.0, seed=1, max_tokens=48))
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_chunk, timeout=WAIT_MS):
        _send(qtbot, window, "Tell me about the moon.")
    first = window.chat.conversation_id
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)  # Ctrl+N
    second = window.chat.conversation_id
    assert second != first and window.chat.busy
    assert _widgets(window) == []  # the new chat shows nothing of the other reply
    # One reply at a time: the composer offers Stop (for the other chat's reply), not Send.
    assert window.chat_page.composer.button.text() == "Stop"
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        pass
    assert workspace.store.messages(second) == []
    assert [m.role for m in workspace.store.messages(first)] == ["user", "assistant"]
    assert _widgets(window) == []
    # Back in the first conversation the finished reply is there, rendered.
    window.chat.open_conversation(first)
    assert [w.role for w in _widgets(window)] == ["user", "assistant"]


def test_history_and_layout_survive_a_restart(qtbot: QtBot, workspace: Workspace,
                                              make_window: Callable[..., MainWindow],
                                              home_dir: Path) -> None:
    _prepare(workspace)
    workspace.save_settings()
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        _send(qtbot, window, "Hello there")
    opened = window.chat.conversation_id
    window.chat.new_conversation()  # a newer, empty one: the restored one must be `opened`
    window.chat.open_conversation(opened)
    # The offscreen screen is 800x800 and restoring clamps to the screen, so stay inside.
    window.chat_page.model_bar.settings_button.setChecked(False)
    window.resize(780, 640)
    window.chat_page.splitter.setSizes([200, 560, 0])
    sizes = window.chat_page.splitter.sizes()
    geometry = window.saveGeometry()
    window.close()
    assert not window.bridge.client.alive
    workspace.close()

    reopened = open_workspace(home_dir, register_starter=False)
    try:
        again = make_window(reopened, start=False)
        assert again.chat.conversation_id == opened
        assert [w.role for w in _widgets(again)] == ["user", "assistant"]
        assert _widgets(again)[0].body.toPlainText().strip() == "Hello there"
        assert (again.size().width(), again.size().height()) == (780, 640)
        assert not again.chat_page.settings_panel.isVisibleTo(again)
        assert reopened.settings.ui.chat_splitter == sizes
        # The sidebar keeps its width; the middle takes what the hidden panel's handle frees.
        assert again.chat_page.splitter.sizes()[0] == sizes[0]
        assert isinstance(geometry, QByteArray)
        again.close()
    finally:
        reopened.close()


def test_killed_worker_shows_the_error_and_reload_recovers(
        qtbot: QtBot, workspace: Workspace, make_window: Callable[..., MainWindow]) -> None:
    _prepare(workspace, LONG)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_chunk, timeout=WAIT_MS):
        _send(qtbot, window, "Write a long story about a fox in a forest.")
    assert window.bridge.client.proc is not None
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        os.kill(window.bridge.client.proc.pid, signal.SIGKILL)
    card = window.chat_page.view.problem_card
    assert card.isVisibleTo(window)
    assert "stopped" in card.label.text() and "saved" in card.label.text()
    assert card.button.text() == "Reload model"
    messages = workspace.store.messages(window.chat.conversation_id)
    assert messages[-1].role == "assistant" and messages[-1].status == INTERRUPTED
    assert messages[-1].content  # the partial reply is kept
    assert "interrupted" in _widgets(window)[-1].footer.text()
    assert not window.chat_page.composer.button.isEnabled()

    qtbot.mouseClick(card.button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.chat.state == ModelState.READY, timeout=WAIT_MS)
    # The cut-off turn is offered again once the model is back.
    assert card.isVisibleTo(window) and card.button.text() == "Try again"
    assert "no complete answer" in card.label.text()
    workspace.settings.remember_sampling(window.chat.model_name or "", SHORT)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        qtbot.mouseClick(card.button, Qt.MouseButton.LeftButton)
    assert not card.isVisibleTo(window)
    last = workspace.store.messages(window.chat.conversation_id)[-1]
    assert last.role == "assistant" and last.status != INTERRUPTED and last.content
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        _send(qtbot, window, "Are you back?")
    assert workspace.store.messages(window.chat.conversation_id)[-1].status != INTERRUPTED
    log = (workspace.home.logs / "inference-worker.log").read_text()
    assert "ended by signal SIGKILL" in log


def test_crashing_kernels_fall_back_with_one_line_and_the_reply_arrives(
        qtbot: QtBot, workspace: Workspace, make_window: Callable[..., MainWindow],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.inference.kernels import OVERRIDE_ENV, KernelMemory
    from backends.inference.llama_compat import CRASH_TEST_ENV

    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    monkeypatch.setenv(CRASH_TEST_ENV, "chat")  # the first reply crashes, as on AMX
    _prepare(workspace)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        _send(qtbot, window, "What is 2+2?")
    messages = workspace.store.messages(window.chat.conversation_id)
    assert messages[-1].role == "assistant" and messages[-1].content.strip()
    assert not window.chat_page.view.problem_card.isVisibleTo(window)
    notice = window.chat_page.model_bar.notice
    assert notice.isVisibleTo(window) and "safe" in notice.text().lower()
    assert "crashed" in notice.toolTip()
    assert KernelMemory(workspace.home.kernels_file).safe_record() is not None


def test_a_model_that_fails_to_load_says_so(qtbot: QtBot, workspace: Workspace,
                                            make_window: Callable[..., MainWindow],
                                            tmp_path: Path) -> None:
    starter = _prepare(workspace)
    workspace.library.register(write_tiny_gguf(tmp_path / "broken.gguf"), "broken")
    window = make_window(workspace)
    picker = window.chat_page.model_bar.picker
    picker.setCurrentIndex(picker.findData("broken"))
    picker.activated.emit(picker.currentIndex())
    qtbot.waitUntil(lambda: window.chat.problem is not None, timeout=WAIT_MS)
    card = window.chat_page.view.problem_card
    assert card.isVisibleTo(window) and "could not be loaded" in card.label.text()
    assert window.chat_page.model_bar.state.text() == "Failed to load"
    picker.setCurrentIndex(picker.findData(starter))
    picker.activated.emit(picker.currentIndex())
    qtbot.waitUntil(lambda: window.chat.state == ModelState.READY, timeout=WAIT_MS)
    assert not card.isVisibleTo(window)


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
    body = _widgets(window)[-1].body
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
    assert _widgets(window) == []


def test_dropped_turns_are_noted_and_shortcuts_work(
        qtbot: QtBot, workspace: Workspace, make_window: Callable[..., MainWindow]) -> None:
    name = _prepare(workspace)
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
        _send(qtbot, window, "Summarise our chat in one line.")
    dropped = trimmed.args[1]
    assert dropped >= 2
    _wait_reply(qtbot, window)
    reply = store.messages(conversation.id)[-1]
    assert reply.stats is not None and reply.stats["dropped_messages"] == dropped
    note = _widgets(window)[-1].note
    assert note.isVisibleTo(window) and f"{dropped} earlier messages were left out" in \
        note.text()


def test_chat_with_model_switches_to_a_fresh_chat(
        qtbot: QtBot, workspace: Workspace, make_window: Callable[..., MainWindow]) -> None:
    name = _prepare(workspace)
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
    _prepare(workspace, LONG)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_chunk, timeout=WAIT_MS):
        _send(qtbot, window, "Write a long story about a fox in a forest.")
    doomed = window.chat.conversation_id
    with qtbot.waitSignal(window.chat.reply_finished, timeout=5000):
        window.chat.delete(doomed)
    assert not window.chat.busy and window.chat_page.composer.button.text() == "Send"
    assert all(c.id != doomed for c in workspace.store.list())
    workspace.settings.remember_sampling(window.chat.model_name or "", SHORT)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        _send(qtbot, window, "Hello again")
    assert [m.role for m in workspace.store.messages(window.chat.conversation_id)] == [
        "user", "assistant"]


def test_correct_this_collects_a_training_example(qtbot: QtBot, workspace: Workspace,
                                                  make_window: Callable[..., MainWindow],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from ui.datasets.datasets_view import CorrectReplyDialog

    _prepare(workspace)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        _send(qtbot, window, "What is the capital of Zorbania?")
    reply = _widgets(window)[-1]
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
