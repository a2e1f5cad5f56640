"""GUI tests of the Models tab: the installed table, import, remove, and hub downloads."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QFileDialog

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.models.download import Download, DownloadPaused
from app.models.hub import HubClient
from app.models.memory_fit import SystemMemory
from app.units import GiB
from tests.gguf_factory import CHATML, write_tiny_gguf
from tests.hub_server import FakeHub
from ui.models.library_model import FIT_COLUMN
from ui.models.models_tab import ModelsTab

REPO = "someone/Tiny-Chat-GGUF"
FILE = "tiny-chat-Q4_K_M.gguf"
ROOMY = SystemMemory(16 * GiB, 8 * GiB)


@pytest.fixture
def make_tab(qtbot, workspace):
    tabs = []

    def make(**kw) -> ModelsTab:
        kw.setdefault("probe_system", lambda: ROOMY)
        tab = ModelsTab(workspace, **kw)
        qtbot.addWidget(tab)
        tabs.append(tab)
        qtbot.waitUntil(lambda: tab.system is not None)
        return tab

    yield make
    for tab in tabs:
        tab.shutdown()
        assert not tab.background.busy and not any(t.running for t in tab.hub.tasks)


@pytest.fixture
def served(fake_hub: FakeHub, tmp_path: Path) -> tuple[FakeHub, bytes]:
    data = write_tiny_gguf(tmp_path / "src.gguf", pad_to=300_000).read_bytes()
    fake_hub.add_repo(REPO, {FILE: data,
                             "tiny-chat-Q8_0.gguf": write_tiny_gguf(tmp_path / "b.gguf",
                                                                    seed=2).read_bytes()})
    return fake_hub, data


def _cell(tab: ModelsTab, row: int, column: int, role=Qt.ItemDataRole.DisplayRole):
    return tab.model.data(tab.model.index(row, column), role)


def test_table_shows_metadata_fit_and_disk_use(qtbot, make_tab, workspace,
                                               tmp_path) -> None:
    workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf", context_length=512,
                                                  chat_template=CHATML), "tiny")
    tab = make_tab()
    assert tab.model.rowCount() == 1
    qtbot.waitUntil(lambda: "tiny" in tab.model.templates)  # named off the GUI thread
    row = [_cell(tab, 0, c) for c in range(tab.model.columnCount())]
    assert row[:4] == ["tiny", "llama", "1K", "ALL_F32"]
    assert row[5] == "512" and row[6] == "the model's own" and row[7] == "imported"
    assert row[FIT_COLUMN].startswith("fits")
    assert "RAM free" in _cell(tab, 0, FIT_COLUMN, Qt.ItemDataRole.ToolTipRole)
    assert _cell(tab, 0, FIT_COLUMN, Qt.ItemDataRole.BackgroundRole) is not None
    assert tab.totals.text().startswith("1 model · ")


def test_fit_turns_red_when_memory_is_short(make_tab, workspace, tmp_path) -> None:
    workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf"), "tiny")
    tab = make_tab(probe_system=lambda: SystemMemory(GiB, 1000))
    assert tab.model.verdicts["tiny"].level == "red"
    assert _cell(tab, 0, FIT_COLUMN).startswith("too big")


def test_import_by_drop_runs_off_the_gui_thread(make_tab, workspace, tmp_path,
                                                monkeypatch, qtbot) -> None:
    tab = make_tab()
    threads = []
    real_import = workspace.library.import_file

    def recording_import(*args, **kwargs):
        threads.append(threading.current_thread())
        return real_import(*args, **kwargs)

    monkeypatch.setattr(workspace.library, "import_file", recording_import)
    path = write_tiny_gguf(tmp_path / "dropped-model.gguf")
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(10, 10), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    with qtbot.waitSignal(tab.library_changed):
        tab.dropEvent(event)
    assert [r.name for r in workspace.library.list()] == ["dropped-model"]
    assert threads and threads[0] is not threading.main_thread()
    assert tab.selected().name == "dropped-model"
    assert "Imported dropped-model" in tab.status.text()


def test_import_by_file_dialog_and_a_bad_file(make_tab, workspace, tmp_path, monkeypatch,
                                              qtbot) -> None:
    tab = make_tab()
    bad = tmp_path / "notes.gguf"
    bad.write_bytes(b"not a model at all")
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        staticmethod(lambda *a, **k: ([str(bad)], "")))
    tab.import_button.click()
    qtbot.waitUntil(lambda: "bad magic bytes" in tab.status.text())
    assert workspace.library.list() == []
    good = write_tiny_gguf(tmp_path / "good.gguf")
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        staticmethod(lambda *a, **k: ([str(good)], "")))
    with qtbot.waitSignal(tab.library_changed):
        tab.import_button.click()
    assert [r.name for r in workspace.library.list()] == ["good"]


def test_remove_asks_first_and_deletes_the_file(make_tab, workspace, tmp_path,
                                                qtbot) -> None:
    record = workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf"), "tiny")
    tab = make_tab()
    asked = []
    tab.confirm = lambda title, text: asked.append(text) or False
    tab.remove_button.click()
    assert asked and "delete its file" in asked[0]
    assert record.path.exists() and tab.model.rowCount() == 1
    tab.confirm = lambda title, text: True
    tab.show()
    tab.table.setFocus()
    qtbot.waitUntil(tab.table.hasFocus)
    qtbot.keyClick(tab.table, Qt.Key.Key_Delete)  # the Delete key does what Remove does
    assert workspace.library.list() == [] and not record.path.exists()
    assert tab.model.rowCount() == 0 and "Removed tiny" in tab.status.text()


def test_remove_is_refused_while_the_model_is_loaded(make_tab, workspace, tmp_path) -> None:
    record = workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf"), "tiny")
    client = InferenceClient()  # never started: only its 'loaded' state matters here
    client.loaded = p.Loaded(path=str(record.path), n_ctx=512, n_ctx_train=512,
                             n_gpu_layers=0, n_threads=1, template_source="gguf",
                             template_sha256="0", load_seconds=0.1)
    tab = make_tab(client=client)
    tab.confirm = lambda title, text: pytest.fail("must not ask while loaded")
    tab.remove_button.click()
    assert "loaded in the chat right now" in tab.status.text()
    assert record.path.exists() and len(workspace.library.list()) == 1


def test_open_folder_and_chat_with_this_model(make_tab, workspace, tmp_path, qtbot) -> None:
    record = workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf"), "tiny")
    tab = make_tab()
    opened = []
    tab.open_url = lambda url: opened.append(url.toLocalFile()) or True
    tab.folder_button.click()
    assert opened == [str(record.path.parent)]
    with qtbot.waitSignal(tab.chat_requested) as blocker:
        tab.chat_button.click()
    assert blocker.args == ["tiny"]


def test_download_progress_through_to_chat(make_tab, workspace, served, qtbot) -> None:
    hub, data = served
    hub.throttle = 0.002
    tab = make_tab()
    view = tab.hub
    assert view.results.rowCount() >= 5  # the curated list on the first visit
    view.query.setText("tiny")
    view.search_button.click()
    qtbot.waitUntil(lambda: view.results.rowCount() == 1
                    and view.results.item(0, 0).text() == REPO)
    view.results.selectRow(0)
    qtbot.waitUntil(lambda: view.files_table.rowCount() == 2)
    assert view.selected_file().filename == FILE  # Q4_K_M is preselected
    assert view.files_table.item(0, 3).text() == "fits"
    # one Range request reads the header, so the fit includes the KV cache
    qtbot.waitUntil(lambda: "2 layers" in view.files_label.text())
    assert "KV cache" in view.files_table.item(0, 3).toolTip()
    assert "header has been read" not in view.files_table.item(0, 3).toolTip()
    tab.ctx_spin.setValue(8192)  # one context for both lists' verdicts
    assert "at 8,192 tokens" in view.files_table.item(0, 3).toolTip()
    assert view.selected_file().filename == FILE  # the selection survives the refresh
    seen: list[tuple[int, str]] = []
    rows = []

    def watch(row) -> None:  # runs before the transfer starts, after the row's own slot
        rows.append(row)
        row.task.progress.connect(lambda prog: seen.append((prog.done, row.detail.text())))

    view.download_added.connect(watch)
    with qtbot.waitSignal(tab.library_changed, timeout=20_000):
        view.download_button.click()
    [row] = rows
    assert seen[-1][0] == len(data)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert all("MiB/s" in text and "left" in text for _, text in seen)
    assert row.bar.value() == 1000 and not row.chat_button.isHidden()
    assert row.pause_button.isHidden() and "SHA-256 verified" in row.detail.text()
    names = [r.name for r in workspace.library.list()]
    assert names == ["tiny-chat-Q4_K_M"] and tab.model.rowCount() == 1
    with qtbot.waitSignal(tab.chat_requested) as blocker:
        row.chat_button.click()
    assert blocker.args == ["tiny-chat-Q4_K_M"]


def test_pause_resume_and_cancel_from_the_row(make_tab, workspace, served, qtbot) -> None:
    hub, data = served
    hub.throttle = 0.01
    tab = make_tab()
    file = HubClient().pick_file(REPO, filename=FILE)
    row = tab.hub.start_download(file)
    qtbot.waitUntil(lambda: row.bar.value() > 0, timeout=10_000)
    with qtbot.waitSignal(row.task.paused, timeout=10_000):
        row.pause_button.click()
    assert row.pause_button.text() == "Resume" and "Paused at" in row.detail.text()
    kept = row.task.download.partial_bytes
    assert 0 < kept < len(data)
    assert tab.pages.tabText(1) == "Discover on Hugging Face"  # nothing running
    hub.throttle = 0.01
    # Every title the tab is given, not only the one on screen when polled: on a busy
    # machine the resumed download can finish between two polls.
    titles: list[str] = []
    set_title = tab.pages.setTabText
    tab.pages.setTabText = lambda i, text: (titles.append(text), set_title(i, text))
    with qtbot.waitSignal(row.task.finished, timeout=20_000):
        row.pause_button.click()
        qtbot.waitUntil(lambda: any("(downloading 1 · " in t for t in titles))
    assert f"bytes={kept}-" in hub.range_requests()
    qtbot.waitUntil(lambda: tab.pages.tabText(1) == "Discover on Hugging Face")

    hub.throttle = 0.01
    other = tab.hub.start_download(HubClient().pick_file(REPO, quant="Q8_0"))
    with qtbot.waitSignal(other.task.cancelled, timeout=10_000):
        other.cancel_button.click()
    assert list(workspace.home.downloads.iterdir()) == []
    assert [r.name for r in workspace.library.list()] == ["tiny-chat-Q4_K_M"]


def test_a_partial_download_from_last_session_can_resume(make_tab, workspace, served,
                                                         qtbot) -> None:
    hub, data = served
    file = HubClient().pick_file(REPO, filename=FILE)
    job: Download

    def stop(progress) -> None:
        if progress.done >= 100_000:
            job.pause()

    job = Download(workspace.home, workspace.library, file, stop, progress_interval=0)
    with pytest.raises(DownloadPaused):
        job.run()
    tab = make_tab()
    [row] = tab.hub.rows
    assert row.pause_button.text() == "Resume" and "Paused at" in row.detail.text()
    with qtbot.waitSignal(row.task.finished, timeout=20_000):
        row.pause_button.click()
    assert workspace.library.list()[0].path.read_bytes() == data


def test_main_window_has_the_models_tab(qtbot, workspace) -> None:
    from ui.main_window import MainWindow

    window = MainWindow(workspace)
    qtbot.addWidget(window)
    titles = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert "Models" in titles
    assert window.tabs.widget(titles.index("Models")) is window.models_tab
    assert window.models_tab.client is window.bridge.client
    window.close()
    assert not window.models_tab.background.busy


def test_hub_errors_are_shown_not_raised(make_tab, workspace, served, qtbot) -> None:
    hub, _ = served
    tab = make_tab()
    tab.hub.open_repo("nobody/none")
    qtbot.waitUntil(lambda: "no model repository 'nobody/none'" in tab.hub.status.text())
    assert tab.hub.files_table.rowCount() == 0 and not tab.hub.download_button.isEnabled()

    hub.corrupt = True
    row = tab.hub.start_download(HubClient().pick_file(REPO, filename=FILE))
    # the row's slots were connected before the transfer started, so wait on them
    qtbot.waitUntil(lambda: "is corrupt" in row.detail.text(), timeout=10_000)
    assert row.pause_button.text() == "Retry"
    assert workspace.library.list() == [] and tab.model.rowCount() == 0
    hub.corrupt = False
    with qtbot.waitSignal(tab.library_changed, timeout=10_000):
        row.pause_button.click()  # Retry
    assert [r.source for r in workspace.library.list()] == ["download"]


def test_retry_pressed_as_the_failed_transfer_returns_starts_again(
        workspace, served, monkeypatch) -> None:
    """The row offers Retry when the transfer says it failed, an instant before its thread
    returns; a click in that instant (seen on a busy machine) was ignored."""
    from ui.models.download_task import DownloadTask, TaskState

    task = DownloadTask(workspace.home, workspace.library,
                        HubClient().pick_file(REPO, filename=FILE))
    returning = threading.Event()
    task._thread = threading.Thread(target=returning.wait, args=(0.5,), daemon=True)
    task._thread.start()  # the failed transfer's thread, not yet returned
    task.state = TaskState.FAILED
    assert not task.running  # so the row's button means Retry, not Pause
    started: list[bool] = []
    monkeypatch.setattr(task, "_work", lambda: started.append(True))
    task.start()
    task.wait()
    assert started == [True] and task.state is TaskState.RUNNING


def test_chat_with_this_model_switches_to_the_chat_tab(qtbot, workspace, tmp_path,
                                                       monkeypatch) -> None:
    from ui.main_window import MainWindow

    window = MainWindow(workspace)
    qtbot.addWidget(window)
    loads = []
    monkeypatch.setattr(window.chat, "load_model", loads.append)
    window.tabs.setCurrentWidget(window.models_tab)
    # a model that arrived after the window was built (as a download would)
    workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf"), "fresh")
    window.models_tab.refresh(select="fresh")
    window.models_tab.chat_button.click()
    assert window.tabs.currentWidget() is window.chat_page and loads == ["fresh"]
    assert window.chat_page.model_bar.picker.findText("fresh") >= 0
    window.close()
