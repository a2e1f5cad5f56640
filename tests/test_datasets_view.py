"""Teach from chat in the window: correct a reply, then browse, edit and delete."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from app.chat.corrections import CorrectionStore
from app.workspace import Workspace
from ui.datasets.datasets_view import CorrectReplyDialog, DatasetsView


def _conversation(workspace: Workspace) -> int:
    conv = workspace.store.create(title="t", model="smol")
    workspace.store.add_message(conv.id, "user", "What is the capital of Zorbania?")
    return workspace.store.add_message(conv.id, "assistant", "Paris.").id


def test_correct_dialog_saves_an_example(qtbot, workspace: Workspace) -> None:
    corrections = CorrectionStore(workspace.library.conn)
    message_id = _conversation(workspace)
    dialog = CorrectReplyDialog(corrections, workspace.store, message_id, "Paris.")
    qtbot.addWidget(dialog)
    dialog._on_save()  # unchanged text is refused with a reason
    assert "same as the original" in dialog.error.text() and dialog.example is None
    dialog.editor.setPlainText("Quillport.")
    with qtbot.waitSignal(dialog.accepted, timeout=1000):
        dialog._on_save()
    assert dialog.example is not None and dialog.example.corrected == "Quillport."
    assert corrections.count() == 1


def test_view_lists_edits_and_deletes(qtbot, workspace: Workspace, monkeypatch) -> None:
    corrections = CorrectionStore(workspace.library.conn)
    view = DatasetsView(corrections)
    qtbot.addWidget(view)
    assert "No corrections yet" in view.count_label.text()
    assert not view.export_button.isEnabled()

    corrections.add_from_conversation(workspace.store, _conversation(workspace), "Quillport.")
    with qtbot.waitSignal(view.changed, timeout=1000) as blocker:
        view.refresh()
    assert blocker.args == [1] and view.count_label.text() == "1 correction collected"
    view.list.setCurrentRow(0)
    assert view.rejected_view.toPlainText() == "Paris."
    assert "Zorbania" in view.prompt_view.toPlainText()

    view.corrected_edit.setPlainText("Quillport, by the sea.")
    view.save_button.click()
    assert corrections.list()[0].corrected == "Quillport, by the sea."

    monkeypatch.setattr(QMessageBox, "question",
                        lambda *a, **k: QMessageBox.StandardButton.Yes)
    view.list.setCurrentRow(0)
    view.delete_button.click()
    assert corrections.count() == 0 and view.list.count() == 0
