"""Driving the chat window as a person does, shared by its tests: the starter model set
up with greedy replies, a message typed and sent with Enter, the reply awaited, and the
message widgets in the order shown. The windows themselves come from the ``make_window``
fixture (tests/starter_window.py)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.inference import protocol as p
from app.settings import LoadSettings
from app.workspace import Workspace
from tests.chat_widgets import shown_messages
from tests.starter_window import WAIT_MS
from ui.chat.message_widget import MessageWidget
from ui.main_window import MainWindow

SHORT = p.SamplingParams(temperature=0.0, seed=1, max_tokens=16)
LONG = p.SamplingParams(temperature=0.0, seed=1, max_tokens=600)


def prepare(workspace: Workspace, sampling: p.SamplingParams = SHORT) -> str:
    """The starter as the home's model, replying with ``sampling``; its name."""
    record = workspace.library.ensure_starter()
    assert record is not None, "the starter model is not installed"
    workspace.settings.load = LoadSettings(n_ctx=1024, n_threads=2)
    workspace.settings.remember_sampling(record.name, sampling)
    return record.name


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    editor = window.chat_page.composer.editor
    editor.setFocus()
    editor.setPlainText(text)
    qtbot.keyClick(editor, Qt.Key.Key_Return)


def wait_reply(qtbot: QtBot, window: MainWindow) -> None:
    qtbot.waitUntil(lambda: window.chat.reply is None, timeout=WAIT_MS)


def shown(window: MainWindow) -> list[MessageWidget]:
    return shown_messages(window.chat_page.view)
