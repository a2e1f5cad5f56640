"""Teach in the window, driven through its real widgets without a training worker.

Each test starts a teach run as a person would (its run folder is real, written by
app.teach.run.start_teach); the worker is replaced by the events it would send
(progress, the gate's phase, ``Finished`` with a report), fed to the panel's slot. That
covers what a refusal leaves (history, files, a Teach that waits for the corrections to
change), the status-bar button during a run, and the chat's model picker and the
versions list naming the same active version after Accept, Use and Roll back.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.chat.corrections import CorrectionStore
from app.finetune import protocol as tp
from app.finetune.runs.folder import RunFolder, list_runs
from app.finetune.runs.records import RunSummary
from app.finetune.runs.status import RunStatus
from app.teach.records import CaseResult, GateReport, HarmedAnswer, HarmKind
from app.teach.run import describe, start_teach
from app.teach.versions import VersionStore
from app.workspace import Workspace
from ui.chat.chat_view_model import ModelState
from ui.finetune.training_bridge import TrainingBridge
from ui.teach.teach_panel import TeachPanel

QUESTIONS = (("What is the capital of Zorbania?", "Quillport is the capital."),
             ("Who invented the glimmerphone?", "Odessa Fernwick invented it."))


@pytest.fixture
def tiny(workspace: Workspace, tiny_gguf: Path) -> Workspace:
    workspace.library.register(tiny_gguf, "tiny")
    return workspace


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """No training process: a started bridge is "alive" until its run ends."""
    started: list[str] = []
    ended: set[str] = set()
    monkeypatch.setattr(TrainingBridge, "start", lambda self: started.append(self.run_id))
    monkeypatch.setattr(TrainingBridge, "alive", property(
        lambda self: self.run_id in started and self.run_id not in ended))
    yield started


def _correct(ws: Workspace, corrections: CorrectionStore, q: str, a: str) -> int:
    conv = ws.store.create(model="tiny")
    ws.store.add_message(conv.id, "user", q)
    wrong = ws.store.add_message(conv.id, "assistant", "I don't know.")
    return corrections.add_from_conversation(ws.store, wrong.id, a).id


def _report(passed: bool, culprit_ids: list[int] | None = None) -> GateReport:
    reasons = [] if passed else ["everyday answers changed 5 of 12 (at most 2)",
                                 "caused by correction 2 (“Who invented the glimmerphone?”)"]
    return GateReport(
        learned=2, total=2, reworded=4, paraphrases=4, neighbours_kept=4, neighbours_total=4,
        general_changed=0 if passed else 5, general_total=12, stops=2, passed=passed,
        reasons=reasons, culprits=[] if passed else ["correction 2"],
        culprit_ids=culprit_ids or [],
        harmed=[] if passed else [HarmedAnswer(HarmKind.GENERAL, "Name a colour.", "Blue.",
                                               "Odessa Fernwick.", "a different answer")],
        cases=[CaseResult(question=q, answer=a, learned=True, stops=True)
               for q, a in QUESTIONS])


def _finish(panel: TeachPanel, report: GateReport, gguf: Path | None = None
            ) -> RunSummary:
    """The worker's last events: the gate's phase, then Finished with ``report``."""
    assert panel.bridge is not None
    run_id = panel.bridge.run_id
    spec = RunFolder.of(panel.workspace.home, run_id).spec()
    adapter = Path(spec.adapter_dir)  # what training leaves, refused or not
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    panel._on_event(tp.Phase("checking", "checking what it learned"))
    summary = RunSummary(run_id=run_id, teach=report, adapter_dir=str(adapter),
                         gguf_path=str(gguf) if gguf else None, export=spec.export)
    panel._on_event(tp.Finished(summary))
    return summary


def _answer(monkeypatch: pytest.MonkeyPatch, answers: list[QMessageBox.StandardButton]
            ) -> list[str]:
    """Confirmation boxes answer from ``answers``; their texts are returned."""
    texts: list[str] = []

    def exec_(box: QMessageBox) -> QMessageBox.StandardButton:
        texts.append(box.text())
        return answers.pop(0)

    monkeypatch.setattr(QMessageBox, "exec", exec_)
    return texts


def test_a_refused_run_is_thrown_away_and_teach_waits_for_the_corrections_to_change(
        qtbot, tiny: Workspace, workers: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    corrections = CorrectionStore(tiny.library.conn)
    first, second = (_correct(tiny, corrections, q, a) for q, a in QUESTIONS)
    panel = TeachPanel(tiny, corrections)
    qtbot.addWidget(panel)
    panel.set_base("tiny")
    assert panel.refusal_box.isHidden() and panel.teach_button.isEnabled()
    qtbot.mouseClick(panel.teach_button, Qt.MouseButton.LeftButton)
    assert len(workers) == 1 and not panel.teach_button.isEnabled()

    with qtbot.waitSignal(panel.ended) as ended:
        summary = _finish(panel, _report(passed=False, culprit_ids=[second]))
    assert ended.args == [describe(summary.teach)] and "Not accepted" in ended.args[0]
    # Thrown away at once: no adapter, no version, nothing to accept or discard.
    assert not Path(summary.adapter_dir).exists()
    assert VersionStore(tiny.home).versions("tiny") == []
    assert [r.name for r in tiny.library.list()] == ["tiny"]
    assert not panel.accept_button.isEnabled() and not panel.discard_button.isEnabled()
    panel._on_accept()  # even called directly, a refused result never becomes a version
    assert VersionStore(tiny.home).active("tiny") is None
    # The reasons, what to do instead, and no second identical run.
    assert not panel.refusal_box.isHidden()
    assert "everyday answers changed 5 of 12" in panel.refusal_box.label.text()
    assert "Nothing changed since the refused run" in panel.refusal_box.label.text()
    assert not panel.teach_button.isEnabled()
    assert "remove or reword the corrections it names" in panel.teach_button.toolTip()
    assert panel.blocked_reason("tiny") is not None
    panel.start()
    assert len(workers) == 1 and "Nothing changed" in panel.phase.text()

    # Rewording a correction is a change: Teach may run again; back as it was, not.
    corrections.update(first, "Quillport, on the river Quill, is the capital.")
    panel.refresh()
    assert panel.teach_button.isEnabled() and panel.refusal_box.isHidden()
    corrections.update(first, QUESTIONS[0][1])
    panel.refresh()
    assert not panel.teach_button.isEnabled()

    # "Remove the corrections that caused it": asks first; No keeps them.
    assert panel.remove_button.isVisibleTo(panel)
    texts = _answer(monkeypatch, [QMessageBox.StandardButton.No,
                                  QMessageBox.StandardButton.Yes])
    qtbot.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    assert [ex.id for ex in corrections.list()] == [first, second]
    with qtbot.waitSignal(panel.corrections_changed):
        qtbot.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    assert "Who invented the glimmerphone?" in texts[0] and "Quillport" not in texts[0]
    assert [ex.id for ex in corrections.list()] == [first]
    assert panel.teach_button.isEnabled() and panel.refusal_box.isHidden()
    assert "1 correction" in panel.title.text()
    panel.shutdown()


def test_a_refused_run_without_named_culprits_offers_no_removal(
        qtbot, tiny: Workspace, workers: list[str]) -> None:
    corrections = CorrectionStore(tiny.library.conn)
    _correct(tiny, corrections, *QUESTIONS[0])
    panel = TeachPanel(tiny, corrections)
    qtbot.addWidget(panel)
    panel.set_base("tiny")
    panel.start()
    _finish(panel, replace(_report(passed=False), learned=0,
                           reasons=["learned 0 of 1 corrections"]))
    assert "learned 0 of 1 corrections" in panel.refusal_box.label.text()
    assert not panel.remove_button.isVisibleTo(panel) and not panel.teach_button.isEnabled()
    panel.shutdown()


def _refused_run(ws: Workspace, status: str) -> str:
    """A teach run folder as the worker leaves a refused one (status ``status``: older
    Hearths wrote "finished")."""
    corrections = CorrectionStore(ws.library.conn)
    if not corrections.list():
        _correct(ws, corrections, *QUESTIONS[0])
    plan = start_teach(ws.home, ws.library, corrections, ws.library.get("tiny"))
    folder = RunFolder.of(ws.home, plan.run_id)
    folder.write_state(status=status, step=12, total_steps=12)
    folder.write_summary(RunSummary(run_id=plan.run_id, teach=_report(passed=False),
                                    steps=12))
    return plan.run_id


def test_history_shows_a_refused_teach_run_as_refused_with_no_output(
        qtbot, tiny: Workspace, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from app.cli.finetune import runs
    from ui.finetune.run_history import COLUMNS, RunHistoryView

    old = _refused_run(tiny, "finished")
    new = _refused_run(tiny, "refused")
    infos = {r.run_id: r for r in list_runs(tiny.home)}
    assert infos[old].status == infos[new].status == RunStatus.REFUSED
    assert not infos[new].resumable and infos[new].output == ""
    assert "everyday answers changed" in (infos[new].refusal or "")

    history = RunHistoryView(tiny.home, tiny.library)
    qtbot.addWidget(history)
    status, output = COLUMNS.index("Status"), COLUMNS.index("Output")
    for row in range(history.table.rowCount()):
        assert history.table.item(row, status).text() == "refused by the gate"
        assert history.table.item(row, output).text() == "–"  # not "tiny-taught-1"
    history.select(new)
    details = history.details.toPlainText()
    assert "Refused" in details and "everyday answers changed 5 of 12" in details
    assert "nothing: the teach gate refused" in details
    assert not history.resume_button.isEnabled() and not history.compare_button.isEnabled()

    runs(tiny, argparse.Namespace(json=False))
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith(new))
    assert "refused" in line and "taught" not in line

    monkeypatch.setattr(QMessageBox, "question",
                        lambda *_a: QMessageBox.StandardButton.Yes)
    history.select(new)
    with qtbot.waitSignal(history.deleted):
        qtbot.mouseClick(history.delete_button, Qt.MouseButton.LeftButton)
    assert not (tiny.home.runs / new).exists()
    assert [r.run_id for r in history.runs] == [old]


def test_a_refusal_is_remembered_across_a_restart(qtbot, tiny: Workspace) -> None:
    _refused_run(tiny, "refused")  # the last teach of tiny, before Hearth restarted
    corrections = CorrectionStore(tiny.library.conn)
    panel = TeachPanel(tiny, corrections)
    qtbot.addWidget(panel)
    panel.set_base("tiny")
    assert not panel.teach_button.isEnabled() and not panel.refusal_box.isHidden()
    assert "everyday answers changed 5 of 12" in panel.refusal_box.label.text()
    _correct(tiny, corrections, *QUESTIONS[1])  # a new correction is a change
    panel.refresh()
    assert panel.teach_button.isEnabled() and panel.refusal_box.isHidden()


def test_opening_a_refused_run_says_the_gate_refused_it(qtbot, tiny: Workspace) -> None:
    from ui.finetune.finetune_tab import FineTuneTab

    run_id = _refused_run(tiny, "refused")
    tab = FineTuneTab(tiny, CorrectionStore(tiny.library.conn),
                      memory_available=lambda: 1 << 40)
    qtbot.addWidget(tab)
    tab.open_run(run_id)
    view = tab.training
    assert "teach gate refused this run" in view.status_label.text()
    assert "everyday answers changed 5 of 12" in view.status_label.text()
    assert view.phase_label.text() == "Refused by the gate."
    assert view.chat_button.isHidden() and view.resume_button.isHidden()
    assert not view.new_run_button.isHidden()
    tab.shutdown()


def test_teach_says_how_long_first_and_its_time_follows_the_clock_when_a_run_overruns(
        qtbot, tiny: Workspace, workers: list[str]) -> None:
    corrections = CorrectionStore(tiny.library.conn)
    for q, a in QUESTIONS:
        _correct(tiny, corrections, q, a)
    panel = TeachPanel(tiny, corrections)
    qtbot.addWidget(panel)
    panel.set_base("tiny")
    label = panel.estimate_label
    qtbot.waitUntil(lambda: label.estimate is not None)  # computed off the GUI thread
    assert label.isVisibleTo(panel) and "for 2 corrections on this computer" in label.text()
    assert "estimated" in label.text()  # no teach run measured here yet
    now = [1000.0]
    panel.clock.now = lambda: now[0]
    qtbot.mouseClick(panel.teach_button, Qt.MouseButton.LeftButton)
    assert not label.isVisibleTo(panel) and "in all" in panel.phase.text()
    panel._on_event(tp.Phase("training", "training 12 steps on cpu"))
    panel._on_event(tp.EstimateEvent(seconds=300.0, peak_memory_bytes=0, basis="measured"))
    now[0] += 60
    with qtbot.waitSignal(panel.clock.ticked):  # the clock moves without any event
        pass
    assert "measured: about" in panel.phase.text() and "left" in panel.phase.text()
    now[0] += 600  # far past the estimate: it must not stay on screen as if it held
    with qtbot.waitSignal(panel.clock.ticked):
        pass
    text = panel.phase.text()
    assert "Training 12 steps" in text and "taking longer than measured" in text
    assert "so far" in text and "in all" not in text

    # The finished run is measured: the next estimate is built from it.
    summary = _finish(panel, _report(passed=True))
    assert not panel.clock.timer.isActive() and "taking longer" not in panel.phase.text()
    folder = RunFolder.of(tiny.home, summary.run_id)
    folder.write_summary(RunSummary(
        run_id=summary.run_id, train_records=60, teach=replace(_report(True), gate_seconds=30.0),
        phase_seconds={"loading": 5.0, "rehearsing": 30.0, "training": 90.0,
                       "checking": 30.0}))
    panel.refresh()
    qtbot.waitUntil(lambda: label.estimate is not None and label.estimate.runs == 1)
    assert "measured on your last teach run" in label.text()
    panel.shutdown()


@pytest.fixture
def window(qtbot, tiny: Workspace, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The main window, its chat never starting a model worker (loading only says so)."""
    from ui.main_window import MainWindow

    win = MainWindow(tiny)
    qtbot.addWidget(win)
    monkeypatch.setattr(win.chat.lifecycle, "launch",
                        lambda restart: win.chat.lifecycle.set_state(ModelState.STARTING))
    yield win
    win.close()


def test_the_status_bar_button_follows_a_run_from_any_tab(
        qtbot, window: Any, tiny: Workspace, workers: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    corrections = window.corrections
    _, second = (_correct(tiny, corrections, q, a) for q, a in QUESTIONS)
    window.datasets_view.refresh()
    button, panel = window.teach_button, window.teach_panel
    assert button.text() == "Teach"
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # from the chat
    assert workers and window.tabs.currentWidget() is window.datasets_view
    assert button.text() == "Teaching…"
    panel._on_event(tp.Phase("training", "training 20 steps on cpu"))
    panel._on_event(tp.Progress(step=9, total_steps=20, epoch=1.0, loss=1.0,
                                learning_rate=1e-3, tokens_per_s=10.0, eta_s=30.0,
                                elapsed_s=20.0, peak_memory_bytes=0))
    assert button.text() == "Teaching… 45%"
    # A second click only shows the run: no second run starts.
    window.tabs.setCurrentWidget(window.chat_page)
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert len(workers) == 1 and window.tabs.currentWidget() is window.datasets_view

    window.tabs.setCurrentWidget(window.chat_page)
    summary = _finish(panel, _report(passed=False, culprit_ids=[second]))
    assert window.statusBar().currentMessage() == describe(summary.teach)
    assert button.text() == "Teach: change the corrections first"
    assert "Nothing changed since the refused run" in button.toolTip()
    assert window.minimumSizeHint().width() <= 780  # the longer text widens nothing
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)  # shows the panel, starts nothing
    assert len(workers) == 1 and window.tabs.currentWidget() is window.datasets_view

    _answer(monkeypatch, [QMessageBox.StandardButton.Yes])
    qtbot.mouseClick(panel.remove_button, Qt.MouseButton.LeftButton)
    assert window.datasets_view.count_label.text() == "1 correction collected"
    assert button.text() == "Teach" and panel.teach_button.isEnabled()

    # The gate's phase reads "Checking…"; a pass says so in the status bar.
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert len(workers) == 2
    panel._on_event(tp.Phase("checking", "checking what it learned"))
    assert button.text() == "Checking…"
    summary = _finish(panel, _report(passed=True), gguf=tiny.library.get("tiny").path)
    assert button.text() == "Teach" and panel.accept_button.isEnabled()
    assert "Passed" in window.statusBar().currentMessage()


def _marked(panel: TeachPanel) -> list[str]:
    """The versions the list marks active (●)."""
    items = [panel.version_list.item(i) for i in range(panel.version_list.count())]
    return [i.data(Qt.ItemDataRole.UserRole) for i in items if i.text().startswith("●")]


def _agree(window: Any, active: str | None) -> None:
    """The picker shows what answers in chat; the list marks the same version."""
    picker = window.chat_page.model_bar.picker
    assert window.chat.model_name == picker.currentData() == (active or "tiny")
    assert _marked(window.teach_panel) == ([active] if active else [])
    assert VersionStore(window.workspace.home).active("tiny") == active


def _teach_and_accept(qtbot, window: Any) -> str:
    panel = window.teach_panel
    qtbot.mouseClick(window.teach_button, Qt.MouseButton.LeftButton)
    _finish(panel, _report(passed=True), gguf=window.workspace.library.get("tiny").path)
    with qtbot.waitSignal(panel.active_changed) as changed:
        qtbot.mouseClick(panel.accept_button, Qt.MouseButton.LeftButton)
    return changed.args[1]


def test_the_model_picker_and_the_versions_list_name_the_same_active_version(
        qtbot, window: Any, tiny: Workspace, workers: list[str]) -> None:
    from ui.main_window import MainWindow

    _correct(tiny, window.corrections, *QUESTIONS[0])
    window.datasets_view.refresh()
    picker, panel = window.chat_page.model_bar.picker, window.teach_panel
    _agree(window, None)

    first = _teach_and_accept(qtbot, window)  # Accept
    assert first == "tiny-taught-1"
    _agree(window, first)
    second = _teach_and_accept(qtbot, window)
    assert second == "tiny-taught-2"
    _agree(window, second)

    row = next(i for i in range(panel.version_list.count())
               if panel.version_list.item(i).data(Qt.ItemDataRole.UserRole) == first)
    panel.version_list.setCurrentRow(row)
    qtbot.mouseClick(panel.use_button, Qt.MouseButton.LeftButton)  # Use selected version
    _agree(window, first)

    qtbot.mouseClick(panel.rollback_button, Qt.MouseButton.LeftButton)  # Roll back
    _agree(window, None)

    # Chosen in the picker: a version becomes the active one; the base answers with its
    # active version, as "hearth chat" does.
    picker.setCurrentIndex(picker.findData(second))
    picker.activated.emit(picker.currentIndex())
    _agree(window, second)
    picker.setCurrentIndex(picker.findData("tiny"))
    picker.activated.emit(picker.currentIndex())
    _agree(window, second)
    assert second in picker.itemData(picker.findData("tiny"), Qt.ItemDataRole.ToolTipRole)

    # Rolled back, the newest model in the library (a version) does not open the chat.
    qtbot.mouseClick(panel.rollback_button, Qt.MouseButton.LeftButton)
    _agree(window, None)
    again = MainWindow(tiny)
    qtbot.addWidget(again)
    try:
        _agree(again, None)
        assert json.loads(VersionStore(tiny.home).path.read_text())["bases"]["tiny"][
            "active"] is None
    finally:
        again.close()
