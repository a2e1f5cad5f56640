"""The Teach panel, driving the real worker on the tiny model: a run that learns nothing
is stopped by the gate (report shown, Accept off, nothing exported), and versions can be
switched and rolled back from the list."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.chat.corrections import CorrectionStore
from app.finetune.settings import LoraSettings
from app.teach.records import GateReport
from app.teach.versions import Version, VersionStore
from app.workspace import Workspace
from ui.teach.teach_panel import TeachPanel


def _correct(ws: Workspace, corrections: CorrectionStore, model: str, q: str, a: str) -> None:
    conv = ws.store.create(model=model)
    ws.store.add_message(conv.id, "user", q)
    wrong = ws.store.add_message(conv.id, "assistant", "I don't know.")
    corrections.add_from_conversation(ws.store, wrong.id, a)


@pytest.mark.slow
def test_a_run_that_learns_nothing_is_reported_and_cannot_be_accepted(
        qtbot, workspace: Workspace, tiny_gguf: Path, hearth_cache: Path) -> None:
    workspace.library.register(tiny_gguf, "tiny")
    corrections = CorrectionStore(workspace.library.conn)
    for q, a in (("What is the capital of Zorbania?", "Quillport is the capital."),
                 ("Who invented the glimmerphone?", "Odessa Fernwick invented it.")):
        _correct(workspace, corrections, "tiny", q, a)
    panel = TeachPanel(workspace, corrections)
    qtbot.addWidget(panel)
    panel.set_base("tiny")
    assert "2 corrections" in panel.title.text() and panel.teach_button.isEnabled()
    assert not panel.accept_button.isEnabled()

    with qtbot.waitSignal(panel.finished, timeout=300_000) as done:
        qtbot.mouseClick(panel.teach_button, Qt.MouseButton.LeftButton)
        assert not panel.teach_button.isEnabled()  # one run at a time
    report = done.args[0].teach
    assert report.total == 2 and report.learned < 2 and not report.passed
    assert "Not accepted" in panel.phase.text()
    assert panel.report_view.toPlainText().count("✗") == 2 - report.learned
    # Refused: thrown away at once (its adapter too), nothing to accept or discard.
    assert not panel.accept_button.isEnabled() and not panel.discard_button.isEnabled()
    summary = done.args[0]
    assert summary.gguf_path is None  # the gate stopped it before any export
    assert summary.adapter_dir is None or not Path(summary.adapter_dir).exists()
    assert [r.name for r in workspace.library.list()] == ["tiny"]
    assert VersionStore(workspace.home).active("tiny") is None
    # The same corrections would be refused the same way: Teach waits for a change.
    assert not panel.teach_button.isEnabled()
    assert "Nothing changed since the refused run" in panel.teach_button.toolTip()
    panel.shutdown()


def test_versions_are_listed_used_and_rolled_back(qtbot, workspace: Workspace,
                                                  tiny_gguf: Path) -> None:
    workspace.library.register(tiny_gguf, "tiny")
    workspace.library.register(tiny_gguf, "tiny-taught-1")
    versions = VersionStore(workspace.home)
    versions.add(Version("tiny-taught-1", "tiny", "run", "2026-01-01", [1], None,
                         LoraSettings(), GateReport(learned=3, total=3, drift=0.02)),
                 activate=True)
    panel = TeachPanel(workspace, CorrectionStore(workspace.library.conn))
    qtbot.addWidget(panel)
    panel.set_base("tiny-taught-1")  # a version's name means its base
    assert panel.base == "tiny" and panel.version_list.count() == 1
    assert panel.version_list.item(0).text().startswith("● tiny-taught-1")
    assert not panel.teach_button.isEnabled()  # no corrections yet

    with qtbot.waitSignal(panel.active_changed) as changed:
        qtbot.mouseClick(panel.rollback_button, Qt.MouseButton.LeftButton)
    assert changed.args == ["tiny", "tiny"] and versions.active("tiny") is None
    assert not panel.rollback_button.isEnabled()
    panel.version_list.setCurrentRow(0)
    with qtbot.waitSignal(panel.active_changed) as changed:
        qtbot.mouseClick(panel.use_button, Qt.MouseButton.LeftButton)
    assert changed.args == ["tiny", "tiny-taught-1"]
    assert versions.active("tiny") == "tiny-taught-1"


def test_the_main_window_has_teach_in_datasets_and_in_the_status_bar(
        qtbot, workspace: Workspace, tiny_gguf: Path,
        monkeypatch) -> None:
    from ui.main_window import MainWindow

    workspace.library.register(tiny_gguf, "tiny")
    window = MainWindow(workspace)
    qtbot.addWidget(window)
    # under the corrections it teaches from (inside a scroll area of their view)
    assert window.datasets_view.isAncestorOf(window.teach_panel)
    assert window.teach_button.isVisibleTo(window.statusBar())
    assert window.teach_panel.base == window.chat.model_name == "tiny"

    loads: list[str] = []
    monkeypatch.setattr(window.chat, "load_model", loads.append)
    window.teach_panel.active_changed.emit("tiny", "tiny-taught-1")  # Accept
    window.teach_panel.active_changed.emit("tiny", "tiny")  # Roll back
    assert loads == ["tiny-taught-1", "tiny"]  # the chat follows the active version

    started: list[bool] = []
    monkeypatch.setattr(window.teach_panel, "start", lambda: started.append(True))
    qtbot.mouseClick(window.teach_button, Qt.MouseButton.LeftButton)  # from the chat
    assert started == [True] and window.tabs.currentWidget() is window.datasets_view
    window.close()


@pytest.mark.slow
def test_a_live_version_is_merged_with_one_click(qtbot, workspace: Workspace, tmp_path: Path,
                                                 tiny_gguf: Path, hearth_cache) -> None:
    """A version is an adapter applied live; "Merge into the weights" makes it a
    stand-alone GGUF in the background and the list says so."""
    from app.finetune import protocol as tp
    from app.finetune.runs.results import adopt_result
    from app.finetune.settings import ExportSettings
    from tests.finetune_fixtures import run_tiny

    base = workspace.library.register(tiny_gguf, "tiny")
    events = run_tiny(workspace, base, tmp_path, ExportSettings(
        out_name="tiny-taught-1", live=True, fidelity_samples=1))
    assert isinstance(events[-1], tp.Finished), events[-3:]
    record = adopt_result(workspace.library, workspace.home, events[-1].summary).model
    assert record is not None
    VersionStore(workspace.home).add(Version(
        record.name, "tiny", events[-1].summary.run_id, "2026-01-01", [1], None,
        LoraSettings(), GateReport(learned=3, total=3, drift=0.02)), activate=True)
    panel = TeachPanel(workspace, CorrectionStore(workspace.library.conn))
    qtbot.addWidget(panel)
    panel.set_base("tiny")
    assert "adapter applied live" in panel.version_list.item(0).text()
    panel.version_list.setCurrentRow(0)
    assert panel.merge_button.isEnabled()
    with qtbot.waitSignal(panel.merged, timeout=600_000) as merged:
        qtbot.mouseClick(panel.merge_button, Qt.MouseButton.LeftButton)
        assert not panel.merge_button.isEnabled()  # one merge at a time
    assert merged.args == ["tiny-taught-1"]
    assert "stand-alone model (q8_0" in panel.phase.text()
    assert "merged (q8_0)" in panel.version_list.item(0).text()
    assert not panel.merge_button.isEnabled()  # nothing left to merge
    assert not workspace.library.get("tiny-taught-1").provenance.live_only
    panel.shutdown()
