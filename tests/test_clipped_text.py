"""No label cuts its text off where a person cannot read the rest: a word-wrapped label
is as tall as its text (the Export dialog's result was cut at the bottom), and a one-line
label too narrow for its text ends in "…" with the whole line in its tooltip (the model
bar's state read "Not loa" in a narrow chat column)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QWidget
from pytestqt.qtbot import QtBot

from app.models.handoff import HandoffResult
from app.workspace import Workspace
from tests.gguf_factory import CHATML, write_tiny_gguf
from ui.main_window import MainWindow
from ui.models.export_dialog import ExportDialog

LONG_NAME = "SmolLM2-135M-Instruct-taught-capitals-v3"


def clipped(root: QWidget) -> list[str]:
    """The shown labels whose text is cut with no way to read the rest."""
    cut = []
    for label in root.findChildren(QLabel):
        if not label.isVisibleTo(root) or not label.text() or label.width() <= 0:
            continue
        if label.wordWrap():
            if label.heightForWidth(label.width()) > label.height() + 1:
                cut.append(f"{label.text()[:40]!r}: wrapped text taller than its label")
        elif label.sizeHint().width() > label.width() + 1:
            shown = getattr(label, "shown_text", lambda: "")()
            if not (shown.endswith("…") and label.text() in label.toolTip()):
                cut.append(f"{label.text()[:40]!r}: cut without '…' and a tooltip")
    return cut


def test_the_export_dialog_shows_all_of_its_result(qtbot: QtBot, workspace: Workspace,
                                                   tmp_path: Path) -> None:
    record = workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf"), LONG_NAME)
    dialog = ExportDialog(workspace, record)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    folder = Path.home() / "hearth-export" / f"{LONG_NAME}-ollama-export"
    dialog._on_done(HandoffResult(
        folder, [folder / f"{LONG_NAME}.gguf", folder / "Modelfile"],
        f"cd {folder} && ollama create {LONG_NAME} -f Modelfile"))
    qtbot.waitUntil(lambda: not clipped(dialog), timeout=2000)
    assert f"ollama create {LONG_NAME} -f Modelfile" in dialog.status.text()
    assert dialog.status.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse
    dialog.grab().save(str(tmp_path / "export.png"))
    dialog.done(0)


def test_a_narrow_window_elides_rather_than_cuts(qtbot: QtBot, workspace: Workspace,
                                                 tmp_path: Path) -> None:
    workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf", chat_template=CHATML),
                                  "tiny-model-with-a-rather-long-name-v2")
    window = MainWindow(workspace)
    qtbot.addWidget(window)
    window.resize(1000, 650)
    window.show()
    qtbot.waitExposed(window)
    try:
        for index in range(window.tabs.count()):
            window.tabs.setCurrentIndex(index)
            qtbot.wait(50)
            assert clipped(window.tabs.currentWidget()) == [], window.tabs.tabText(index)
        state = window.chat_page.model_bar.state
        assert state.text() == "Not loaded"  # the whole text is still the label's text
        # The empty composer's hint wraps in a narrow column: the box grows to show it.
        window.tabs.setCurrentIndex(0)
        editor = window.chat_page.composer.editor
        margin = 2 * editor.document().documentMargin()
        hint = editor.fontMetrics().boundingRect(
            0, 0, int(editor.viewport().width() - margin), 1 << 16,
            Qt.TextFlag.TextWordWrap, editor.placeholderText())
        qtbot.waitUntil(lambda: editor.viewport().height() >= hint.height() + margin)
    finally:
        window.close()
