"""Strangers' text is shown as text, and nothing it names is read (finding F1).

A reply, a download record, a hub file's header and a file name are planted with
``<img src=...>`` HTML and Markdown images that point at trap files; the real window
opens over them, and inotify on the trap folder proves that no file there is opened
(it does see the test's own open at the end, so the watch is live). Then each place
is checked to show the hostile text literally.
"""

from __future__ import annotations

import ctypes
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFWriter
from PySide6.QtCore import QObject, QPoint, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QTextDocument
from PySide6.QtWidgets import QApplication, QLabel, QToolTip
from pytestqt.qtbot import QtBot

from app.workspace import Workspace
from tests.hub_server import FakeHub
from ui.chat.message_widget import MessageWidget
from ui.main_window import MainWindow
from ui.untrusted import open_link

IN_OPEN, IN_ACCESS = 0x20, 0x01
# A tiny PNG: what a trap holds, so a read of it would even succeed.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


class OpenWatch:
    """Counts opens and reads of the files in one folder (Linux inotify)."""

    def __init__(self, folder: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        assert libc.inotify_add_watch(self.fd, str(folder).encode(), IN_OPEN | IN_ACCESS) >= 0
        self.names: list[str] = []

    def events(self) -> list[str]:
        while True:
            try:
                data = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                return self.names
            at = 0
            while at < len(data):
                _wd, _mask, _cookie, size = struct.unpack_from("iIII", data, at)
                name = data[at + 16:at + 16 + size].rstrip(b"\0").decode()
                self.names.append(name)
                at += 16 + size

    def close(self) -> None:
        os.close(self.fd)


class LinkCatcher(QObject):
    """Stands in for the browser: QDesktopServices hands it the URLs it would open."""

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[str] = []

    @Slot(QUrl)
    def take(self, url: QUrl) -> None:
        self.opened.append(url.toString())


def _hostile(trap: Path) -> str:
    return (f'<img src="{trap}"><img src="file://{trap}"><img src=trap.png>'
            f"<b>bold?</b>")


def _hub_header(path: Path, arch: str) -> bytes:
    writer = GGUFWriter(str(path), arch)
    writer.add_name("hostile")
    writer.add_block_count(2)
    writer.add_context_length(256)
    writer.add_embedding_length(16)
    writer.add_head_count(2)
    writer.add_head_count_kv(1)
    writer.add_tensor("token_embd.weight", np.zeros((32, 16), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def _plain_html(html: str) -> str:
    document = QTextDocument()
    document.setHtml(html)
    return document.toPlainText()


def _shown(label: QLabel) -> str:
    """What a label shows, as text."""
    if label.textFormat() == Qt.TextFormat.PlainText:
        return label.text()
    return _plain_html(label.text())


@pytest.fixture
def traps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "traps"
    folder.mkdir()
    for name in ("trap.png", "zero.png"):
        (folder / name).write_bytes(PNG)
    monkeypatch.chdir(folder)  # so a relative src names a trap too
    return folder


def test_strangers_text_reads_no_file_and_shows_literally(
        qtbot: QtBot, workspace: Workspace, traps: Path, tmp_path: Path,
        fake_hub: FakeHub) -> None:
    trap = traps / "trap.png"
    hostile = _hostile(trap)
    # A reply saved before it was rendered: it opens with the window, at every start.
    store = workspace.store
    conversation = store.create(hostile)
    store.add_message(conversation.id, "user", "show me")
    reply = (f"Here:\n\n![x]({traps / 'zero.png'})\n\n{hostile}\n\n"
             f"[a link](file://{trap}) and [another](https://example.org/page)")
    store.add_message(conversation.id, "assistant", reply)
    # A download record with a hostile repository and file name, restored at start.
    workspace.home.downloads.mkdir(parents=True, exist_ok=True)
    sha = "ab" * 32
    (workspace.home.downloads / f"{sha}.json").write_text(json.dumps({
        "repo": f"evil/{hostile}", "filename": f"{hostile}-Q4_K_M.gguf", "revision": "main",
        "sha256": sha, "size": 1000, "started_at": "2025-01-01T00:00:00+00:00"}), "utf-8")
    # A hub repository whose file header names a hostile architecture.
    arch = f'<img src="{trap}">arch'
    fake_hub.add_repo("someone/Hostile-GGUF",
                      {"hostile-Q4_K_M.gguf": _hub_header(tmp_path / "h.gguf", arch)})

    catcher = LinkCatcher()
    for scheme in ("http", "https", "file"):
        QDesktopServices.setUrlHandler(scheme, catcher, "take")
    watch = OpenWatch(traps)
    window = MainWindow(workspace)
    qtbot.addWidget(window)
    try:
        window.show()
        window.resize(1200, 800)
        # The conversation renders (a short reply renders at once), the hub view...
        widgets = [w for w in window.chat_page.view.widgets.values()
                   if isinstance(w, MessageWidget) and w.role == "assistant"]
        assert len(widgets) == 1
        body = widgets[0].body
        hub = window.models_tab.hub
        hub.open_repo("someone/Hostile-GGUF")
        qtbot.waitUntil(lambda: hub.shape is not None, timeout=20_000)
        # ...a failed import whose file name is hostile, and every tab painted.
        bad = traps.parent / "<img src=trap.png>.gguf"
        bad.write_bytes(b"not a model at all")
        window.models_tab.import_path(bad)
        qtbot.waitUntil(lambda: window.models_tab.import_button.isEnabled(), timeout=20_000)
        for index in range(window.tabs.count()):
            window.tabs.setCurrentIndex(index)
            window.tabs.currentWidget().repaint()
        window.models_tab.pages.setCurrentIndex(1)
        hub.repaint()
        # A tooltip is a label too: the conversation's, as the list gives it.
        sidebar = window.chat_page.sidebar
        tip = sidebar.model.data(sidebar.model.index(0, 0), Qt.ItemDataRole.ToolTipRole)
        QToolTip.showText(QPoint(10, 10), tip, sidebar)
        qtbot.waitUntil(QToolTip.isVisible, timeout=5000)
        QApplication.processEvents()

        assert watch.events() == [], "a document read a file a stranger's text named"

        # The reply: raw HTML shows as text; the Markdown image stays an empty placeholder.
        text = body.toPlainText()
        assert hostile in text and "<b>bold?</b>" in text
        # Links open on a click, and only http(s).
        body.anchorClicked.emit(QUrl(f"file://{trap}"))
        body.anchorClicked.emit(QUrl("https://example.org/page"))
        assert catcher.opened == ["https://example.org/page"]
        assert not open_link(QUrl("data:text/html,hi")) and not open_link(QUrl(str(trap)))
        # The download row, the hub's files label, the import error: literally.
        row = hub.rows[0]
        assert f"{hostile}-Q4_K_M.gguf · evil/{hostile}" == _shown(row.title)
        assert arch in _shown(hub.files_label)
        assert "<img src=trap.png>.gguf" in _shown(window.models_tab.status.label)
        assert hostile in QToolTip.text() or hostile in _plain_html(QToolTip.text())
        QToolTip.hideText()
    finally:
        window.close()
        for scheme in ("http", "https", "file"):
            QDesktopServices.unsetUrlHandler(scheme)
    # The watch is live: the test's own read of a trap is seen.
    trap.read_bytes()
    assert "trap.png" in watch.events()
    watch.close()


def test_the_run_history_pane_shows_a_runs_names_literally(
        qtbot: QtBot, workspace: Workspace, traps: Path, tmp_path: Path) -> None:
    from app.finetune.datasets import load_dataset
    from app.finetune.runs.folder import create_run
    from app.finetune.settings import ExportSettings, LoraSettings
    from tests.finetune_fixtures import fact_rows, write_jsonl
    from tests.gguf_factory import write_tiny_gguf
    from ui.finetune.run_history import RunHistoryView

    hostile = _hostile(traps / "trap.png")
    base = workspace.library.register(write_tiny_gguf(tmp_path / "base.gguf"),
                                      f"base{hostile}")
    data = load_dataset(write_jsonl(tmp_path / "<img src=trap.png>.jsonl", fact_rows()))
    run_id = create_run(workspace.home, base, data, LoraSettings(max_steps=2),
                        ExportSettings(out_name=f"out{hostile}"))
    watch = OpenWatch(traps)
    view = RunHistoryView(workspace.home, workspace.library)
    qtbot.addWidget(view)
    view.show()
    view.select(run_id)
    view.details.repaint()
    QApplication.processEvents()
    assert watch.events() == []
    shown = view.details.toPlainText()
    assert f"base{hostile}" in shown and f"out{hostile}" in shown
    assert "<img src=trap.png>.jsonl" in shown
    watch.close()
