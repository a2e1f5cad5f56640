"""The walkthrough's small things (issue 15): counts agree with their nouns, a model's
size is never "?", the training page does not say "step 0 of 1" before it knows, and
"Time left" does not outlive a cancelled run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.finetune import protocol as tp
from app.models.memory_fit import SystemMemory
from app.units import GiB, count
from app.workspace import Workspace
from tests.gguf_factory import write_tiny_gguf
from ui.finetune.training_view import TrainingView
from ui.models.library_model import record_size
from ui.models.models_tab import ModelsTab


def test_counts_agree_with_their_nouns() -> None:
    assert count(1, "model") == "1 model"
    assert count(2, "model") == "2 models"
    assert count(0, "record") == "0 records"
    assert count(1024, "copy", "copies") == "1,024 copies"


def test_one_model_reads_as_one_model_with_its_size(qtbot: QtBot, workspace: Workspace,
                                                     tmp_path: Path) -> None:
    record = workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf"), "tiny")
    tab = ModelsTab(workspace, probe_system=lambda: SystemMemory(16 * GiB, 8 * GiB))
    qtbot.addWidget(tab)
    try:
        assert tab.totals.text().startswith("1 model · ")
        assert "?" not in tab.totals.text()
        size_cell = tab.model.index(0, 4).data()
        assert size_cell != "?" and size_cell.endswith(("KiB", "bytes", "MiB"))
    finally:
        tab.shutdown()
    # A record that lost its size in the library still shows the file's real size.
    bare = replace(record, info=replace(record.info, file_size=None))
    assert record_size(bare) == record.path.stat().st_size


def test_the_training_page_says_getting_ready_then_steps(qtbot: QtBot) -> None:
    view = TrainingView()
    qtbot.addWidget(view)
    view.reset("run")
    assert view.progress.text() == "Getting ready…"
    view.apply(tp.DataReady(4, 1, 100, 40, 20, 0, 30, 128, total_steps=5))
    assert view.progress.text() == "step 0 of 5"
    view.apply(tp.Progress(2, 5, 0.5, 2.0, 1e-3, 50.0, 75.0, 10.0, 1 << 30))
    assert view.progress.text() == "step 2 of 5"
    assert view.stat_labels["eta"].text() != "–"
    view.apply(tp.Cancelled(2, "ckpt"))
    view.show_outcome("cancelled", "Cancelled at step 2.", resumable=True)
    assert view.stat_labels["eta"].text() == "–"  # nothing is left to wait for
    view.reset("again")
    assert view.progress.text() == "Getting ready…"
