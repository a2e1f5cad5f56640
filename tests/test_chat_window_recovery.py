"""The chat window when things go wrong, with the real worker and starter model: the
history and layout survive a restart, a killed worker shows its error and Reload
recovers, crashing kernels fall back to safe ones with one line, a model that fails to
load says so. The conversation itself: tests/test_chat_window.py.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QByteArray, Qt
from pytestqt.qtbot import QtBot

from app.chat.conversations import INTERRUPTED
from app.workspace import Workspace, open_workspace
from tests.chat_window_driver import LONG, SHORT, prepare, send, shown
from tests.gguf_factory import write_tiny_gguf
from tests.starter_window import WAIT_MS
from ui.chat.chat_view_model import ModelState
from ui.main_window import MainWindow

pytestmark = pytest.mark.slow


def test_history_and_layout_survive_a_restart(qtbot: QtBot, workspace: Workspace,
                                              make_window: Callable[..., MainWindow],
                                              home_dir: Path) -> None:
    prepare(workspace)
    workspace.save_settings()
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        send(qtbot, window, "Hello there")
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
        assert [w.role for w in shown(again)] == ["user", "assistant"]
        assert shown(again)[0].body.toPlainText().strip() == "Hello there"
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
    prepare(workspace, LONG)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_chunk, timeout=WAIT_MS):
        send(qtbot, window, "Write a long story about a fox in a forest.")
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
    assert "interrupted" in shown(window)[-1].footer.text()
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
        send(qtbot, window, "Are you back?")
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
    prepare(workspace)
    window = make_window(workspace)
    with qtbot.waitSignal(window.chat.reply_finished, timeout=WAIT_MS):
        send(qtbot, window, "What is 2+2?")
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
    starter = prepare(workspace)
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
