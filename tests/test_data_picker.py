"""The Fine-tune tab's data picker: the corrections from chats are snapshot and checked
off the GUI thread, and again when Start is pressed, so a run trains on the corrections
as they are then (the same file when nothing changed)."""

from __future__ import annotations

import threading

import pytest

from app.chat.corrections import CorrectionStore
from app.finetune.datasets import Dataset
from app.workspace import Workspace
from ui.finetune.data_picker import DataPicker


def _correct(ws: Workspace, corrections: CorrectionStore, question: str, answer: str) -> None:
    conv = ws.store.create(model="tiny")
    ws.store.add_message(conv.id, "user", question)
    wrong = ws.store.add_message(conv.id, "assistant", "I don't know.")
    corrections.add_from_conversation(ws.store, wrong.id, answer)


def test_the_corrections_are_snapshot_off_the_gui_thread_and_again_for_start(
        qtbot, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    corrections = CorrectionStore(workspace.library.conn)
    _correct(workspace, corrections, "What is the capital of Zorbania?", "Quillport.")
    threads: list[threading.Thread] = []
    snapshot = CorrectionStore.snapshot
    monkeypatch.setattr(CorrectionStore, "snapshot", lambda self, folder: (
        threads.append(threading.current_thread()), snapshot(self, folder))[1])
    picker = DataPicker(workspace.home, corrections)
    qtbot.addWidget(picker)
    try:
        with qtbot.waitSignal(picker.checked, timeout=20_000) as checked:
            picker.corrections_radio.setChecked(True)
        first = checked.args[0]
        assert isinstance(first, Dataset) and first.stats.records == 1
        assert first.path.parent == workspace.home.datasets and not picker.fresh

        with qtbot.waitSignal(picker.unchanged, timeout=20_000):  # Start, nothing new
            picker.check_corrections(for_start=True)
        assert picker.fresh and picker.dataset is first

        _correct(workspace, corrections, "Who invented the glimmerphone?", "Odessa Fernwick.")
        with qtbot.waitSignal(picker.checked, timeout=20_000) as again:  # Start, one more
            picker.check_corrections(for_start=True)
        second = again.args[0]
        assert isinstance(second, Dataset) and second.stats.records == 2
        assert second.path != first.path and picker.dataset_path == second.path
        assert picker.fresh
        assert len(threads) == 3 and threading.main_thread() not in threads
    finally:
        picker.shutdown()
