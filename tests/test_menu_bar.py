"""The menu bar, Ctrl+Q, and the notes that say Copy and Export worked (issue 15)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication, QFileDialog, QLineEdit, QMessageBox
from pytestqt.qtbot import QtBot

from app.workspace import Workspace
from tests.chat_widgets import shown_messages
from ui.chat.message_widget import MessageWidget
from ui.main_window import MainWindow


@pytest.fixture
def window(qtbot: QtBot, workspace: Workspace) -> Iterator[MainWindow]:
    conversation = workspace.store.create(title="Pasta")
    workspace.store.add_message(conversation.id, "user", "How long for spaghetti?")
    workspace.store.add_message(conversation.id, "assistant",
                                "About 10 minutes.\n\n```\nboil()\n```")
    win = MainWindow(workspace)
    qtbot.addWidget(win)
    win.show()
    win.chat.open_conversation(conversation.id)
    yield win
    win.close()


def _messages(qtbot: QtBot, window: MainWindow) -> list[MessageWidget]:

    def found() -> list[MessageWidget]:
        return shown_messages(window.chat_page.view)

    qtbot.waitUntil(lambda: len(found()) == 2, timeout=5000)
    return found()


def _menu(window: MainWindow, title: str) -> list[str]:
    menu = next(a.menu() for a in window.menuBar().actions() if a.text() == title)
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def test_the_menus_name_every_conversation_action(window: MainWindow) -> None:
    titles = [a.text() for a in window.menuBar().actions()]
    assert titles[:2] == ["&File", "&Conversation"] and titles[-1] == "&Help"
    assert "&Quit" in _menu(window, "&File")
    assert {"&Rename…", "&Delete…"} <= set(_menu(window, "&Conversation"))
    assert window.menus.quit.shortcut().toString() == "Ctrl+Q"
    assert window.menus.new_chat.shortcut().toString() == "Ctrl+N"


def test_ctrl_q_quits(qtbot: QtBot, window: MainWindow) -> None:
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_Q, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=3000)


def test_rename_and_delete_from_the_menu(qtbot: QtBot, window: MainWindow,
                                         workspace: Workspace) -> None:
    opened = window.chat.conversation_id
    window.menus.rename.trigger()
    editor = window.chat_page.sidebar.list.findChild(QLineEdit)
    assert editor is not None and editor.text() == "Pasta"
    editor.setText("Italian")
    qtbot.keyClick(editor, Qt.Key.Key_Return)  # the delegate commits on the next loop
    qtbot.waitUntil(lambda: workspace.store.get(opened).title == "Italian", timeout=3000)

    def cancel() -> None:
        box = QApplication.activeModalWidget()
        assert isinstance(box, QMessageBox) and "Delete “Italian”" in box.text()
        box.reject()
    QTimer.singleShot(50, cancel)
    window.menus.delete.trigger()
    assert [c.id for c in workspace.store.list()] == [opened]


def test_export_says_where_it_wrote(qtbot: QtBot, window: MainWindow, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "pasta.md"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "")))
    window.menus.export_md.trigger()
    assert "spaghetti" in target.read_text("utf-8")
    assert window.statusBar().currentMessage() == f"Exported “Pasta” to {target}"


def test_copy_says_it_copied(qtbot: QtBot, window: MainWindow) -> None:
    reply = _messages(qtbot, window)[-1]
    reply.copy_button.click()
    assert QGuiApplication.clipboard().text().startswith("About 10 minutes.")
    assert reply.copy_button.text() == "Copied ✓"
    assert window.statusBar().currentMessage() == "Copied the message"
    qtbot.waitUntil(lambda: reply.copy_button.text() == "Copy", timeout=3000)
    reply.body.anchorClicked.emit(QUrl("copy-code:0"))
    assert QGuiApplication.clipboard().text() == "boil()"
    assert window.statusBar().currentMessage() == "Copied the code block"


def test_menus_keep_the_minimum_width(window: MainWindow) -> None:
    assert window.minimumSizeHint().width() <= 780


def test_the_chat_settings_fit_their_column_without_a_sideways_scrollbar(
        qtbot: QtBot, window: MainWindow) -> None:
    """The load box's long choices (KV cache, chat template) once widened the settings
    page past its column at the default window size, hiding the boxes' right edge."""
    window.resize(1100, 720)
    qtbot.waitExposed(window)
    panel = window.chat_page.settings_panel
    qtbot.waitUntil(lambda: panel.viewport().width() > 0)
    assert panel.widget().minimumSizeHint().width() <= panel.viewport().width()
    assert not panel.horizontalScrollBar().isVisible()
