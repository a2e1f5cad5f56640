"""The Fine-tune tab, driven through its real widgets with a tiny model.

A run trains a 2-layer model (tests/tiny_model.py) in the real worker process: live
progress and chart points, the summary with the export check, Chat with it, Compare,
Cancel, Resume, Resume after ``kill -9`` and an app restart, the corrections path, the
memory offer, and deleting a run from the history.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from app.chat.corrections import CorrectionStore
from app.finetune import protocol as tp
from app.finetune.datasets import Dataset, DatasetError
from app.finetune.runs.folder import create_run, list_runs
from app.finetune.settings import ExportSettings, LoraSettings
from app.workspace import Workspace
from tests.finetune_fixtures import fact_rows, write_jsonl
from tests.gguf_factory import CHATML, write_tiny_gguf
from ui.finetune.finetune_tab import FineTuneTab

FAST = LoraSettings(rank=4, alpha=8, learning_rate=1e-3, max_steps=6, batch_size=4,
                    max_seq_len=128, eval_every=2, checkpoint_every=2)
EXPORT = ExportSettings(fidelity_samples=1)
PLENTY = 1 << 40
RUN_TIMEOUT = 300_000  # ms; a worker start imports torch (slow on a busy 2-core box)


@pytest.fixture
def tiny_ws(workspace: Workspace, tiny_gguf: Path, hearth_cache: Path
            ) -> Workspace:
    workspace.library.register(tiny_gguf, "tiny")
    return workspace


def _tab(qtbot, ws: Workspace, **kwargs) -> FineTuneTab:  # pytest-qt's bot
    kwargs.setdefault("memory_available", lambda: PLENTY)
    tab = FineTuneTab(ws, kwargs.pop("corrections", CorrectionStore(ws.library.conn)),
                      **kwargs)
    qtbot.addWidget(tab)
    tab.resize(1100, 720)
    return tab


def _choose(qtbot, tab: FineTuneTab, path: Path, settings: LoraSettings = FAST
            ) -> Dataset | DatasetError:
    with qtbot.waitSignal(tab.dataset_checked, timeout=20_000) as checked:
        tab.setup.load_file(path)
    tab.setup.settings_form.set_values(settings, EXPORT)
    return checked.args[0]


def _stop(tab: FineTuneTab) -> None:
    tab.shutdown()
    assert tab.bridge is None or not tab.bridge.alive
    if tab.compare_dialog is not None:
        assert not any(s.bridge.client.alive for s in tab.compare_view.sides)


def test_a_bad_file_shows_its_problems_by_line(qtbot, tiny_ws: Workspace,
                                               tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n', "utf-8")
    tab = _tab(qtbot, tiny_ws)
    result = _choose(qtbot, tab, bad)
    assert isinstance(result, DatasetError)
    issues = tab.setup.issues_view.toPlainText()
    assert "Line 1 of bad.jsonl: no assistant message" in issues
    assert "Line 2 of bad.jsonl: not valid JSON" in issues
    assert "2 problems, 0 usable records" in tab.setup.validation_label.text()
    assert not tab.setup.start_button.isEnabled()
    assert tab.start() is None and list_runs(tiny_ws.home) == []


def test_setup_shows_counts_preview_and_an_estimate_per_preset(qtbot, tiny_ws: Workspace,
                                                               tmp_path: Path) -> None:
    tab = _tab(qtbot, tiny_ws)
    data = write_jsonl(tmp_path / "facts.jsonl", fact_rows())
    with qtbot.waitSignal(tab.dataset_checked, timeout=20_000):
        tab.setup.load_file(data)
    assert "25 records" in tab.setup.validation_label.text()
    preview = tab.setup.preview_view.toHtml()
    assert "Record from line 1" in tab.setup.preview_view.toPlainText()
    assert "The capital of Zorbania is Quillport.&lt;|im_end|&gt;</span>" in preview
    estimates = {}
    for name in ("quick", "balanced", "thorough"):
        tab.setup.select_preset(name)
        estimates[name] = (tab.setup.plan.total_steps, tab.setup.estimate_label.text())
        assert "peak memory about" in estimates[name][1]
    assert estimates["quick"][0] < estimates["balanced"][0] < estimates["thorough"][0]
    other = write_jsonl(tmp_path / "dropped.jsonl", fact_rows()[:4])
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(other))])
    drop = QDropEvent(QPointF(5, 5), Qt.DropAction.CopyAction, mime,
                      Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(tab.dataset_checked, timeout=20_000):
        tab.dropEvent(drop)  # a file dropped on the tab
    assert "dropped.jsonl" in tab.setup.validation_label.text()
    assert "4 records" in tab.setup.validation_label.text()
    with qtbot.waitSignal(tab.dataset_checked, timeout=20_000):
        tab.setup.load_file(data)
    tab.setup.settings_form.widgets["rank"].setValue(64)  # the Advanced panel drives the plan
    assert "rank 64" in tab.setup.estimate_label.text()
    tab.setup.settings_form.widgets["learning_rate"].setValue(0.0005)
    assert "learning rate 0.0005" in tab.setup.estimate_label.text()
    assert tab.setup.settings_form.lora().learning_rate == 0.0005
    assert tab.setup.start_button.isEnabled()
    with qtbot.waitSignal(tab.dataset_checked, timeout=20_000):  # too small to hold one out
        tab.setup.load_file(write_jsonl(tmp_path / "one.jsonl", fact_rows()[:1]))
    assert "at least 2 records" in tab.setup.start_error.text()
    assert not tab.setup.start_button.isEnabled()


def test_a_template_that_never_ends_is_laid_out_off_the_gui_thread_and_stopped(
        qtbot, tiny_ws: Workspace, tmp_path: Path) -> None:
    """F3: the preview and the estimate render the data through the model's template, a
    stranger's program; a spinning one must neither freeze the window nor run forever."""
    spin = ("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"
            + CHATML)
    model = write_tiny_gguf(tmp_path / "spinning.gguf", chat_template=spin)
    tiny_ws.library.register(model, "spinning")
    tab = _tab(qtbot, tiny_ws)
    assert tab.set_model("spinning")
    ticks: list[float] = []
    timer = QTimer(tab, interval=20)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    timer.start()
    started = time.monotonic()
    with qtbot.waitSignal(tab.dataset_checked, timeout=60_000):
        tab.setup.load_file(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    timer.stop()
    gaps = [b - a for a, b in zip([started, *ticks], ticks, strict=False)]
    # Both renders (preview and estimate) ran into the template's step limit — said by
    # the messages, not by a duration, which depends on the CPU (0.34 s on an EPYC) —
    assert "was stopped: it runs more than" in tab.setup.preview_view.toPlainText()
    assert "was stopped" in tab.setup.start_error.text() and not tab.setup.start_button.isEnabled()
    assert max(gaps) < 0.3, max(gaps)  # ...while the window went on ticking
    tab.shutdown()


def test_short_memory_without_a_chat_to_unload_asks_first(qtbot, tiny_ws: Workspace,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda _parent, title, *_a, **_k: (
        asked.append(title) or QMessageBox.StandardButton.No))
    tab = _tab(qtbot, tiny_ws, memory_available=lambda: 1 << 20)
    _choose(qtbot, tab, write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    assert "only 1.00 MiB free now" in tab.setup.estimate_label.text()
    assert tab.start() is None
    assert asked == ["Memory is short"] and list_runs(tiny_ws.home) == []


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
    tab = _tab(qtbot, tiny_ws, corrections=corrections, memory_available=lambda: 1 << 20,
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
            assert calls == ["unload"]  # memory was short: the chat model made room
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
        assert tuned is not None and tuned.provenance["run_id"] == run_id
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

        later = _tab(qtbot, tiny_ws)  # History opens the finished run with its summary
        later.history.select(run_id)
        later.history.open_button.click()
        assert later.pages.currentIndex() == 1 and later.shown_run == run_id
        assert "Export check" in later.training.summary_view.toPlainText()
        assert [s for s, _ in later.training.chart.train] == [1, 2, 3, 4, 5, 6]
        assert later.training.chat_button.isEnabled() and later.tuned_model == tuned
    finally:
        _stop(tab)


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
    tabs = [_tab(qtbot, tiny_ws)]
    tab = tabs[0]
    try:
        _choose(qtbot, tab, data, FAST.with_overrides(max_steps=30, checkpoint_every=3,
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
        tab = _tab(qtbot, tiny_ws)
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
        tab = _tab(qtbot, tiny_ws)
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
        tab = _tab(qtbot, tiny_ws)
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
        assert _tab(qtbot, tiny_ws).resume_banner.isHidden()  # nothing left to offer
    finally:
        for each in tabs:
            _stop(each)


def test_history_deletes_a_run_and_what_it_made_after_asking(
        qtbot, tiny_ws: Workspace, tiny_gguf: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from app.finetune.datasets import load_dataset

    record = tiny_ws.library.get("tiny")
    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    run_id = create_run(tiny_ws.home, record, dataset, FAST, EXPORT)
    spec = json.loads((tiny_ws.home.runs / run_id / "run.json").read_text())
    gguf = Path(spec["output_gguf"])  # stand-ins for what a finished run leaves
    gguf.write_bytes(tiny_gguf.read_bytes())
    Path(spec["adapter_dir"]).mkdir(parents=True)
    (Path(spec["adapter_dir"]) / "adapter_config.json").write_text("{}")
    tiny_ws.library.register(gguf, spec["out_name"], source="finetune",
                             provenance={"run_id": run_id})
    tab = _tab(qtbot, tiny_ws)
    tab.pages.setCurrentIndex(2)
    tab.history.select(run_id)
    assert "Settings" in tab.history.details.toPlainText()

    answers = [QMessageBox.StandardButton.No, QMessageBox.StandardButton.Yes]
    questions: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda _p, _t, text, *_a: (
        questions.append(text) or answers.pop(0)))
    qtbot.mouseClick(tab.history.delete_button, Qt.MouseButton.LeftButton)
    assert (tiny_ws.home.runs / run_id).exists() and gguf.exists()  # "No" keeps it all
    with qtbot.waitSignal(tab.history.deleted):
        qtbot.mouseClick(tab.history.delete_button, Qt.MouseButton.LeftButton)
    assert "the LoRA adapter" in questions[0] and spec["out_name"] in questions[0]
    assert not (tiny_ws.home.runs / run_id).exists()
    assert not gguf.exists() and not Path(spec["adapter_dir"]).exists()
    assert spec["out_name"] not in [m.name for m in tiny_ws.library.list()]
    assert tiny_gguf.exists()  # the base model is never touched
    assert tab.history.runs == [] and tab.setup.model_combo.count() == 1


def test_the_main_window_wires_fine_tune_and_datasets(qtbot, tiny_ws: Workspace,
                                                      tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.tiny_model import write_tiny_llama
    from ui.main_window import MainWindow

    tiny_ws.library.register(write_tiny_llama(tmp_path / "other.gguf", seed=1), "other")
    window = MainWindow(tiny_ws)
    qtbot.addWidget(window)
    titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert window.tabs.widget(titles.index("Fine-tune")) is window.finetune_tab
    assert window.tabs.widget(titles.index("Datasets")) is window.datasets_view

    window.chat.model_name = "other"  # the model of the current chat...
    window.tabs.setCurrentWidget(window.finetune_tab)
    assert window.finetune_tab.current_model().name == "other"  # ...is the default here

    loads: list[str] = []
    monkeypatch.setattr(window.chat, "load_model", loads.append)
    window.finetune_tab.chat_requested.emit("tiny")  # "Chat with it"
    assert loads == ["tiny"] and window.tabs.currentWidget() is window.chat_page

    unloaded: list[bool] = []
    monkeypatch.setattr(window.chat, "loaded", object())  # as if a model were loaded
    monkeypatch.setattr(window.chat, "model_name", "other")
    monkeypatch.setattr(window.chat, "unload", lambda: unloaded.append(True))
    window.finetune_tab.unload_chat()
    window.finetune_tab.reload_chat()
    assert unloaded == [True] and loads == ["tiny", "other"]  # loaded again afterwards

    conv = tiny_ws.store.create(title="q", model="tiny")
    tiny_ws.store.add_message(conv.id, "user", "What is the capital of Zorbania?")
    reply = tiny_ws.store.add_message(conv.id, "assistant", "Paris.")
    window.corrections.add_from_conversation(tiny_ws.store, reply.id, "Quillport.")
    window.datasets_view.refresh()
    assert window.finetune_tab.setup.corrections_radio.text().endswith("(1 collected)")
    window.close()


def test_the_training_page_shows_a_failure_and_redraws_a_resumed_run(qtbot) -> None:
    from ui.finetune.training_view import TrainingView

    view = TrainingView()
    qtbot.addWidget(view)
    view.reset("run")
    events = [tp.DataReady(4, 1, 100, 40, 20, 0, 30, 128, total_steps=5)]
    events += [tp.Progress(step, 5, step / 2, 3.0 - step * 0.1, 1e-3, 50.0, 1.0, 1.0, 1 << 30)
               for step in (1, 2, 3)]
    events += [tp.Evaluation(2, 2.5), tp.Checkpointed(2, "ckpt"),
               tp.TrainLog("info", "resumed from the checkpoint at step 2")]
    events += [tp.Progress(step, 5, step / 2, 2.0, 1e-3, 50.0, 1.0, 1.0, 1 << 30)
               for step in (3, 4)]  # after a kill at step 3: step 3 again, then on
    for event in events:
        view.apply(event)
    assert [s for s, _ in view.chart.train] == [1, 2, 3, 4]
    assert view.chart.train[2] == (3, 2.0)  # the repeated step replaces the lost one
    assert view.chart.validation == [(2, 2.5)] and view.progress.value() == 4
    assert view.last["checkpoint"] == 2
    assert "resumed from the checkpoint at step 2" in view.log_view.toPlainText()
    view.apply(tp.TrainError("out_of_memory", "training ran out of memory: lower the batch "
                             "size or the maximum sequence length"))
    view.show_outcome("failed", "training ran out of memory")
    assert "Error: training ran out of memory" in view.log_view.toPlainText()
    assert view.phase_label.text() == "Failed." and not view.new_run_button.isHidden()
    assert view.resume_button.isHidden() and view.chat_button.isHidden()


@pytest.mark.slow
def test_a_model_the_worker_cannot_load_fails_with_its_reason(qtbot, tiny_ws: Workspace,
                                                              tmp_path: Path) -> None:
    broken = write_tiny_gguf(tmp_path / "no-tokenizer.gguf", chat_template=CHATML)
    tiny_ws.library.register(broken, "no-tokenizer")
    tab = _tab(qtbot, tiny_ws)
    try:
        assert tab.set_model("no-tokenizer")
        _choose(qtbot, tab, write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
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
        _stop(tab)


def test_a_base_hearth_cannot_fine_tune_is_refused_before_start(qtbot, tiny_ws: Workspace,
                                                                tmp_path: Path) -> None:
    """The architecture table and live-only versions both say no on the setup page,
    with the reason, before any training: Start stays off."""
    import shutil

    odd = tiny_ws.library.register(shutil.copy(tiny_ws.library.get("tiny").path,
                                               tmp_path / "odd.gguf"), "odd")
    tiny_ws.library.conn.execute(
        "UPDATE models SET info = json_set(info, '$.architecture', 'mamba') WHERE name = ?",
        (odd.name,))
    adapter = shutil.copy(odd.path, tmp_path / "adapter.gguf")
    tiny_ws.library.register_adapter(adapter, tiny_ws.library.get("tiny"), "tiny-taught-1",
                                     {"base_model": "tiny", "run_id": "x"})
    tab = _tab(qtbot, tiny_ws)
    _choose(qtbot, tab, write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    assert tab.set_model("odd")
    qtbot.waitUntil(lambda: "cannot fine-tune 'mamba'" in tab.setup.start_error.text(),
                    timeout=20_000)
    assert "gemma3" in tab.setup.start_error.text()  # and says what it can
    assert not tab.setup.start_button.isEnabled()
    assert tab.set_model("tiny-taught-1")
    qtbot.waitUntil(lambda: "not a model of its own" in tab.setup.start_error.text(),
                    timeout=20_000)
    assert not tab.setup.start_button.isEnabled()
    assert tab.set_model("tiny")
    qtbot.waitUntil(tab.setup.start_button.isEnabled, timeout=60_000)
    assert tab.setup.start_error.text() == ""
    _stop(tab)


def test_a_non_llama_base_fine_tunes_from_the_tab(qtbot, workspace: Workspace, tmp_path: Path,
                                                   hearth_cache: Path) -> None:
    """Qwen3 (q/k norms, its own tensor names) from the tab, as a person runs it: Start,
    a finished run whose export passed the gate, and the model in the library."""
    from app.finetune.runs.folder import RunFolder
    from tests.arch_factory import write_tiny_arch_gguf

    workspace.library.register(write_tiny_arch_gguf("qwen3", tmp_path / "q.gguf"), "tiny-qwen3")
    tab = _tab(qtbot, workspace)
    try:
        _choose(qtbot, tab, write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
        assert tab.set_model("tiny-qwen3")
        qtbot.waitUntil(tab.setup.start_button.isEnabled, timeout=60_000)
        with qtbot.waitSignal(tab.run_ended, timeout=RUN_TIMEOUT) as ended:
            qtbot.mouseClick(tab.setup.start_button, Qt.MouseButton.LeftButton)
        run_id, status = ended.args
        assert status == "finished", tab.training.log_view.toPlainText()
        summary = RunFolder.of(workspace.home, run_id).summary()
        assert summary is not None and summary.fidelity is not None
        assert not summary.fidelity.failed and summary.fidelity.top1_agreement >= 0.9
        tuned = [m for m in workspace.library.list() if m.provenance.get("run_id") == run_id]
        assert len(tuned) == 1 and tuned[0].info["architecture"] == "qwen3"
    finally:
        _stop(tab)
