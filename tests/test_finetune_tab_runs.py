"""Real runs from the Fine-tune tab, in the real worker process with a tiny model
(tests/tiny_model.py): corrections trained live to the summary, then Chat with it and
Compare; Cancel, Resume, Resume after ``kill -9`` and an app restart; a model the worker
cannot load; a non-llama base. The tab's setup side is tests/test_finetune_tab.py.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from app.chat.corrections import CorrectionStore
from app.finetune import protocol as tp
from app.finetune.datasets import Dataset
from app.finetune.runs.folder import list_runs
from app.workspace import Workspace
from tests.finetune_fixtures import fact_rows, write_jsonl
from tests.finetune_tab_driver import EXPORT, FAST, RUN_TIMEOUT, choose, open_tab, stop
from tests.gguf_factory import CHATML, write_tiny_gguf
from ui.finetune.finetune_tab import FineTuneTab


@pytest.mark.slow
def test_corrections_train_live_to_a_summary_then_chat_and_compare(
        qtbot, tiny_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    store, corrections = tiny_ws.store, CorrectionStore(tiny_ws.library.conn)
    for question, wrong, right in (("What is the capital of Zorbania?", "Paris.", "Quillport."),
                                   ("Who invented the glimmerphone?", "Edison.",
                                    "Odessa Fernwick.")):
        conv = store.create(title=question, model="tiny")
        store.add_message(conv.id, "user", question)
        reply = store.add_message(conv.id, "assistant", wrong)
        corrections.add_from_conversation(store, reply.id, right)
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *_a, **_k: QMessageBox.StandardButton.Yes)
    calls: list[str] = []
    tab = open_tab(qtbot, tiny_ws, corrections=corrections, memory_available=lambda: 1 << 20,
               unload_chat=lambda: calls.append("unload"),
               reload_chat=lambda: calls.append("reload"))
    try:
        assert tab.setup.corrections_radio.text() == "Corrections from chats (2 collected)"
        with qtbot.waitSignal(tab.dataset_checked, timeout=20_000) as checked:
            tab.setup.corrections_radio.setChecked(True)
        dataset = checked.args[0]
        assert isinstance(dataset, Dataset) and dataset.stats.records == 2
        assert dataset.path.parent == tiny_ws.home.datasets
        assert "Odessa Fernwick.<|im_end|>" in tab.setup.preview_view.toPlainText()
        tab.setup.settings_form.set_values(FAST, EXPORT)
        assert tab.setup.start_button.isEnabled()

        events: list[object] = []
        with qtbot.waitSignal(tab.run_ended, timeout=RUN_TIMEOUT) as ended:
            qtbot.mouseClick(tab.setup.start_button, Qt.MouseButton.LeftButton)
            # Start snapshots the corrections again (off the GUI thread), then starts.
            qtbot.waitUntil(lambda: calls == ["unload"])  # memory was short: room made
            assert tab.pages.currentIndex() == 1 and not tab.training.cancel_button.isHidden()
            tab.bridge.event.connect(events.append)
            # Live: the bar, the stats and the chart move while the worker trains.
            qtbot.waitUntil(lambda: bool(tab.training.chart.train), timeout=RUN_TIMEOUT)
            assert tab.training.progress.value() >= 1 and tab.training.progress.maximum() == 6
            assert "tok/s" in tab.training.stat_labels["speed"].text()
            assert tab.training.stat_labels["memory"].text() != "–"
        run_id, status = ended.args
        assert status == "finished", tab.training.log_view.toPlainText()
        assert calls == ["unload", "reload"]
        assert sum(isinstance(e, tp.Progress) for e in events) >= 1
        assert [s for s, _ in tab.training.chart.train] == [1, 2, 3, 4, 5, 6]
        assert [s for s, _ in tab.training.chart.validation] == [2, 4, 6]
        assert tab.training.progress.value() == 6

        summary = tab.training.summary_view.toPlainText()
        for expected in ("Validation loss", "Export check", "top-1 agreement",
                         "as q8_0 GGUF", "Peak memory"):
            assert expected in summary
        tuned = tab.tuned_model
        assert tuned is not None and tuned.provenance.run_id == run_id
        assert tiny_ws.library.get(tuned.name).source == "finetune"
        assert tuned.name in summary
        with qtbot.waitSignal(tab.chat_requested) as chat:
            qtbot.mouseClick(tab.training.chat_button, Qt.MouseButton.LeftButton)
        assert chat.args == [tuned.name]
        assert tab.history.runs[0].run_id == run_id
        assert tab.history.runs[0].status == "finished"

        qtbot.mouseClick(tab.training.compare_button, Qt.MouseButton.LeftButton)
        view = tab.compare_view
        assert [s.path for s in view.sides] == [Path(tiny_ws.library.get("tiny").path),
                                                tuned.path]
        assert view.prompts_edit.toPlainText().strip()  # primed with held-out prompts
        with qtbot.waitSignal(view.finished, timeout=120_000):
            view.compare(["What is the capital of Zorbania?"])
        assert all(side.stats[0].text() for side in view.sides)

        later = open_tab(qtbot, tiny_ws)  # History opens the finished run with its summary
        later.history.select(run_id)
        later.history.open_button.click()
        assert later.pages.currentIndex() == 1 and later.shown_run == run_id
        assert "Export check" in later.training.summary_view.toPlainText()
        assert [s for s, _ in later.training.chart.train] == [1, 2, 3, 4, 5, 6]
        assert later.training.chat_button.isEnabled() and later.tuned_model == tuned
    finally:
        stop(tab)


def _resume_then_wait_for_a_checkpoint(qtbot, tab: FineTuneTab, click, after: int) -> int:
    """Resume with ``click``; return the step of the first new checkpoint past ``after``."""
    click()
    assert tab.is_training() and not tab.training.cancel_button.isHidden()
    saved: list[int] = []
    tab.bridge.event.connect(lambda e: saved.append(e.step)
                             if isinstance(e, tp.Checkpointed) else None)
    qtbot.waitUntil(lambda: any(step > after for step in saved), timeout=RUN_TIMEOUT)
    return saved[-1]


@pytest.mark.slow
def test_cancel_close_and_kill_all_resume_to_the_same_finished_run(
        qtbot, tiny_ws: Workspace, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "facts.jsonl", fact_rows())
    tabs = [open_tab(qtbot, tiny_ws)]
    tab = tabs[0]
    try:
        choose(qtbot, tab, data, FAST.with_overrides(max_steps=30, checkpoint_every=3,
                                                      eval_every=5))
        run_id = tab.start()
        assert run_id is not None
        qtbot.waitUntil(lambda: len(tab.training.chart.train) >= 2, timeout=RUN_TIMEOUT)
        # 1. Cancel: a checkpoint is saved and Resume is offered.
        with qtbot.waitSignal(tab.run_ended, timeout=60_000) as ended:
            qtbot.mouseClick(tab.training.cancel_button, Qt.MouseButton.LeftButton)
        assert ended.args == [run_id, "cancelled"]
        assert not tab.training.resume_button.isHidden() and tab.training.cancel_button.isHidden()
        cancelled_at = tab.training.progress.value()
        assert 2 <= cancelled_at < 30
        assert [r.status for r in list_runs(tiny_ws.home)] == ["cancelled"]
        tab.shutdown()

        # 2. A run the person cancelled is not pressed on them at the next start, but
        #    History resumes it; then the window closes while it trains.
        tab = open_tab(qtbot, tiny_ws)
        tabs.append(tab)
        assert tab.resume_banner.isHidden()
        tab.history.select(run_id)
        assert tab.history.resume_button.isEnabled()
        closed_after = _resume_then_wait_for_a_checkpoint(
            qtbot, tab, tab.history.resume_button.click, cancelled_at)
        tab.shutdown()  # what closing the main window does
        assert not tab.is_training()
        state = json.loads((tiny_ws.home.runs / run_id / "state.json").read_text())
        assert state["status"] == "cancelled" and state["step"] >= closed_after

        # 3. The next start offers Resume; this time the worker is killed (kill -9).
        tab = open_tab(qtbot, tiny_ws)
        tabs.append(tab)
        assert not tab.resume_banner.isHidden() and tab.resume_banner.run_id == run_id
        assert "stopped when Hearth closed" in tab.resume_banner.label.text()
        with qtbot.waitSignal(tab.run_ended, timeout=RUN_TIMEOUT) as ended:
            killed_after = _resume_then_wait_for_a_checkpoint(
                qtbot, tab, tab.resume_banner.resume_button.click, closed_after)
            os.kill(tab.bridge.client.proc.pid, signal.SIGKILL)
        assert ended.args == [run_id, "interrupted"]
        assert "Resume continues from the last checkpoint" in tab.training.status_label.text()
        assert killed_after < 30
        tab.shutdown()

        # 4. After the crash, the next start offers Resume again, and the run finishes.
        tab = open_tab(qtbot, tiny_ws)
        tabs.append(tab)
        assert not tab.resume_banner.isHidden() and tab.resume_banner.run_id == run_id
        assert "was interrupted" in tab.resume_banner.label.text()
        with qtbot.waitSignal(tab.run_ended, timeout=RUN_TIMEOUT) as ended:
            qtbot.mouseClick(tab.resume_banner.resume_button, Qt.MouseButton.LeftButton)
        assert ended.args == [run_id, "finished"], tab.training.log_view.toPlainText()
        log = tab.training.log_view.toPlainText()
        assert log.count("resumed from the checkpoint at step") == 3
        assert f"resumed from the checkpoint at step {cancelled_at}\n" in log
        steps = [s for s, _ in tab.training.chart.train]
        assert steps == list(range(1, 31))  # replayed, then continued: no step twice
        assert tab.tuned_model is not None and not tab.training.chat_button.isHidden()
        assert [r.status for r in list_runs(tiny_ws.home)] == ["finished"]
        assert open_tab(qtbot, tiny_ws).resume_banner.isHidden()  # nothing left to offer
    finally:
        for each in tabs:
            stop(each)


@pytest.mark.slow
def test_a_model_the_worker_cannot_load_fails_with_its_reason(qtbot, tiny_ws: Workspace,
                                                              tmp_path: Path) -> None:
    broken = write_tiny_gguf(tmp_path / "no-tokenizer.gguf", chat_template=CHATML)
    tiny_ws.library.register(broken, "no-tokenizer")
    tab = open_tab(qtbot, tiny_ws)
    try:
        assert tab.set_model("no-tokenizer")
        choose(qtbot, tab, write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
        assert "<|im_start|>assistant" in tab.setup.preview_view.toPlainText()  # its template
        with qtbot.waitSignal(tab.run_ended, timeout=RUN_TIMEOUT) as ended:
            run_id = tab.start()
        assert ended.args == [run_id, "failed"]
        view = tab.training
        assert "no-tokenizer.gguf" in view.status_label.text()  # the worker's reason
        assert view.phase_label.text() == "Failed." and not view.new_run_button.isHidden()
        assert view.resume_button.isHidden() and view.chat_button.isHidden()
        assert [r.status for r in list_runs(tiny_ws.home)] == ["failed"]
        assert tab.setup.start_button.isEnabled()  # free to try again
    finally:
        stop(tab)


def test_a_non_llama_base_fine_tunes_from_the_tab(qtbot, workspace: Workspace, tmp_path: Path,
                                                   hearth_cache: Path) -> None:
    """Qwen3 (q/k norms, its own tensor names) from the tab, as a person runs it: Start,
    a finished run whose export passed the gate, and the model in the library."""
    from app.finetune.runs.folder import RunFolder
    from tests.arch_factory import write_tiny_arch_gguf

    workspace.library.register(write_tiny_arch_gguf("qwen3", tmp_path / "q.gguf"), "tiny-qwen3")
    tab = open_tab(qtbot, workspace)
    try:
        choose(qtbot, tab, write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
        assert tab.set_model("tiny-qwen3")
        qtbot.waitUntil(tab.setup.start_button.isEnabled, timeout=60_000)
        with qtbot.waitSignal(tab.run_ended, timeout=RUN_TIMEOUT) as ended:
            qtbot.mouseClick(tab.setup.start_button, Qt.MouseButton.LeftButton)
        run_id, status = ended.args
        assert status == "finished", tab.training.log_view.toPlainText()
        summary = RunFolder.of(workspace.home, run_id).summary()
        assert summary is not None and summary.fidelity is not None
        assert not summary.fidelity.failed and summary.fidelity.top1_agreement >= 0.9
        tuned = [m for m in workspace.library.list() if m.provenance.run_id == run_id]
        assert len(tuned) == 1 and tuned[0].info.architecture == "qwen3"
    finally:
        stop(tab)
