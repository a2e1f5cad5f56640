"""Long model names are readable in the chat's model picker (issue 15's walkthrough)
without widening the window past its minimum."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from app.workspace import Workspace
from tests.gguf_factory import write_tiny_gguf
from ui.chat.model_bar import PICKER_MAX_WIDTH
from ui.main_window import MainWindow

LONG = "bartowski-Qwen3-4B-Instruct-2507-abliterated-Q4_K_M-imatrix"


def test_a_long_model_name_shows_whole(qtbot: QtBot, workspace: Workspace,
                                       tmp_path: Path) -> None:
    workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf"), LONG)
    workspace.library.import_file(write_tiny_gguf(tmp_path / "s.gguf"), "short")
    window = MainWindow(workspace)
    qtbot.addWidget(window)
    try:
        picker = window.chat_page.model_bar.picker
        window.chat_page.model_bar.refresh_models()
        picker.setCurrentIndex(picker.findData(LONG))
        window.resize(1280, 820)
        window.show()
        qtbot.waitExposed(window)
        advance = picker.fontMetrics().horizontalAdvance(LONG)
        # The box grows with the name, up to its cap; the list that drops down and the
        # tooltip always show the whole name.
        assert picker.width() >= min(advance, PICKER_MAX_WIDTH - 40)
        assert picker.view().minimumWidth() >= advance
        row = picker.findData(LONG)
        assert LONG in picker.itemData(row, Qt.ItemDataRole.ToolTipRole)
        assert window.minimumSizeHint().width() <= 780
    finally:
        window.close()
