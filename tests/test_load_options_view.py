"""The chat's load settings for the KV cache type and prompt lookup reach the worker:
chosen in the panel, applied with "Apply and reload", reported back by the load."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.workspace import Workspace
from tests.starter_window import WAIT_MS
from ui.chat.chat_view_model import ModelState
from ui.main_window import MainWindow

pytestmark = pytest.mark.slow


def test_kv_cache_and_prompt_lookup_are_applied(qtbot: QtBot, workspace: Workspace,
                                                starter_window: MainWindow) -> None:
    panel = starter_window.chat_page.settings_panel
    assert starter_window.chat.loaded is not None and starter_window.chat.loaded.cache_type == "f16"
    panel.cache_type.setCurrentIndex(panel.cache_type.findData("q8_0"))
    panel.prompt_lookup.setValue(6)
    qtbot.mouseClick(panel.reload_button, Qt.MouseButton.LeftButton)
    chat = starter_window.chat
    qtbot.waitUntil(lambda: chat.state == ModelState.READY and chat.loaded is not None
                    and chat.loaded.cache_type == "q8_0", timeout=WAIT_MS)
    loaded = starter_window.chat.loaded
    assert loaded.prompt_lookup == 6 and loaded.flash_attn  # q8_0 brings flash attention
    assert workspace.settings.load.cache_type == "q8_0"
    assert workspace.settings.load.prompt_lookup == 6
