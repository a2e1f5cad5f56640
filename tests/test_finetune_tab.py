"""The Fine-tune tab before and around a run, driven through its real widgets: the data
file's problems by line, counts, preview and the estimate per preset, a template that
never ends, short memory, a base it cannot fine-tune, the history's delete, the training
page's drawing, and the main window's wiring. No training worker starts here; the runs
themselves are tests/test_finetune_tab_runs.py.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from app.finetune import protocol as tp
from app.finetune.datasets import DatasetError
from app.finetune.runs.folder import create_run, list_runs
from app.models.provenance import Provenance
from app.workspace import Workspace
from tests.finetune_fixtures import fact_rows, write_jsonl
from tests.finetune_tab_driver import EXPORT, FAST, choose, open_tab, stop
from tests.gguf_factory import CHATML, write_tiny_gguf
from ui.finetune import data_layout


def test_a_bad_file_shows_its_problems_by_line(qtbot, tiny_ws: Workspace,
                                               tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{not json\n', "utf-8")
    tab = open_tab(qtbot, tiny_ws)
    result = choose(qtbot, tab, bad)
    assert isinstance(result, DatasetError)
    issues = tab.setup.issues_view.toPlainText()
    assert "Line 1 of bad.jsonl: no assistant message" in issues
    assert "Line 2 of bad.jsonl: not valid JSON" in issues
    assert "2 problems, 0 usable records" in tab.setup.validation_label.text()
    assert not tab.setup.start_button.isEnabled()
    assert tab.start() is None and list_runs(tiny_ws.home) == []


def test_setup_shows_counts_preview_and_an_estimate_per_preset(qtbot, tiny_ws: Workspace,
                                                               tmp_path: Path) -> None:
    tab = open_tab(qtbot, tiny_ws)
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
        qtbot, tiny_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """F3: the preview and the estimate render the data through the model's template, a
    stranger's program; a spinning one must neither freeze the window nor run forever."""
    spin = ("{% for a in range(99999) %}{% for b in range(99999) %}{% endfor %}{% endfor %}"
            + CHATML)
    model = write_tiny_gguf(tmp_path / "spinning.gguf", chat_template=spin)
    tiny_ws.library.register(model, "spinning")
    tab = open_tab(qtbot, tiny_ws)
    assert tab.set_model("spinning")
    laid_out_on: list[threading.Thread] = []
    lay_out = data_layout._lay_out

    def watched(*args: object) -> object:
        laid_out_on.append(threading.current_thread())
        return lay_out(*args)

    monkeypatch.setattr(data_layout, "_lay_out", watched)
    with qtbot.waitSignal(tab.dataset_checked, timeout=60_000):
        tab.setup.load_file(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    # Both renders (preview and estimate) ran into the template's step limit — said by
    # the messages, not by a duration, which depends on the CPU (0.34 s on an EPYC) —
    assert "was stopped: it runs more than" in tab.setup.preview_view.toPlainText()
    assert "was stopped" in tab.setup.start_error.text() and not tab.setup.start_button.isEnabled()
    # ...on a thread of their own, not the window's (which a timer measured once: gaps
    # of a busy machine, not the tab's doing, failed that).
    assert laid_out_on and threading.main_thread() not in laid_out_on
    tab.shutdown()


def test_short_memory_without_a_chat_to_unload_asks_first(qtbot, tiny_ws: Workspace,
                                                          tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    asked: list[str] = []
    monkeypatch.setattr(QMessageBox, "question", lambda _parent, title, *_a, **_k: (
        asked.append(title) or QMessageBox.StandardButton.No))
    tab = open_tab(qtbot, tiny_ws, memory_available=lambda: 1 << 20)
    choose(qtbot, tab, write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    assert "only 1.00 MiB free now" in tab.setup.estimate_label.text()
    assert tab.start() is None
    assert asked == ["Memory is short"] and list_runs(tiny_ws.home) == []


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
                                     Provenance(base_model="tiny", run_id="x"))
    tab = open_tab(qtbot, tiny_ws)
    choose(qtbot, tab, write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
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
    stop(tab)


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
                             provenance=Provenance(run_id=run_id))
    tab = open_tab(qtbot, tiny_ws)
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
               tp.Log("info", "resumed from the checkpoint at step 2")]
    events += [tp.Progress(step, 5, step / 2, 2.0, 1e-3, 50.0, 1.0, 1.0, 1 << 30)
               for step in (3, 4)]  # after a kill at step 3: step 3 again, then on
    for event in events:
        view.apply(event)
    assert [s for s, _ in view.chart.train] == [1, 2, 3, 4]
    assert view.chart.train[2] == (3, 2.0)  # the repeated step replaces the lost one
    assert view.chart.validation == [(2, 2.5)] and view.progress.value() == 4
    assert view.last["checkpoint"] == 2
    assert "resumed from the checkpoint at step 2" in view.log_view.toPlainText()
    view.apply(tp.Error("out_of_memory", "training ran out of memory: lower the batch "
                             "size or the maximum sequence length"))
    view.show_outcome("failed", "training ran out of memory")
    assert "Error: training ran out of memory" in view.log_view.toPlainText()
    assert view.phase_label.text() == "Failed." and not view.new_run_button.isHidden()
    assert view.resume_button.isHidden() and view.chat_button.isHidden()
