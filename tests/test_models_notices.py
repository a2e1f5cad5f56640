"""Errors on the Models tab are said where they happen, with the action that helps, and
do not linger (issue 15's walkthrough: a failed import with a bytes literal in it still
showing 15 minutes later; "unload it" with no Unload control)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from PySide6.QtWidgets import QFileDialog
from pytestqt.qtbot import QtBot

from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.models.memory_fit import SystemMemory
from app.units import GiB
from app.workspace import Workspace
from tests.gguf_factory import write_tiny_gguf
from ui.models.models_tab import ModelsTab


@pytest.fixture
def make_tab(qtbot: QtBot, workspace: Workspace) -> Iterator[Callable[..., ModelsTab]]:
    tabs: list[ModelsTab] = []

    def make(**kw: object) -> ModelsTab:
        tab = ModelsTab(workspace, probe_system=lambda: SystemMemory(16 * GiB, 8 * GiB),
                        **kw)
        qtbot.addWidget(tab)
        tab.show()
        tabs.append(tab)
        return tab

    yield make
    for tab in tabs:
        tab.shutdown()


def test_a_failed_import_reads_as_words_and_offers_another_file(
        qtbot: QtBot, make_tab: Callable[..., ModelsTab], tmp_path, monkeypatch) -> None:
    tab = make_tab()
    bad = tmp_path / "notes.gguf"
    bad.write_bytes(b"This is a text file, not a model")
    chosen = [[str(bad)]]
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        staticmethod(lambda *a, **k: (chosen.pop(0) if chosen else [], "")))
    tab.import_button.click()
    qtbot.waitUntil(lambda: tab.status.error)
    text = tab.status.text()
    assert "starts with “This”" in text and "b'" not in text
    assert tab.status.action_button.isVisible()
    assert tab.status.action_button.text() == "Choose another file…"
    assert tab.status.close_button.isVisible()
    good = write_tiny_gguf(tmp_path / "good.gguf")
    chosen.append([str(good)])
    with qtbot.waitSignal(tab.library_changed):
        tab.status.action_button.click()  # the action that helps: pick another file
    assert not tab.status.error and "Imported good" in tab.status.text()


def test_an_error_is_dismissed_and_a_note_fades(
        qtbot: QtBot, make_tab: Callable[..., ModelsTab]) -> None:
    tab = make_tab()
    tab.say("Something went wrong", error=True)
    tab.status.close_button.click()
    assert tab.status.text() == "" and not tab.status.close_button.isVisible()
    tab.status.note("Removed tiny.", ms=50)
    qtbot.waitUntil(lambda: tab.status.text() == "", timeout=2000)


def test_remove_while_loaded_offers_unload_then_removes(
        qtbot: QtBot, make_tab: Callable[..., ModelsTab], workspace: Workspace,
        tmp_path) -> None:
    record = workspace.library.import_file(write_tiny_gguf(tmp_path / "m.gguf"), "tiny")
    client = InferenceClient()  # never started: only its 'loaded' state matters here
    client.loaded = p.Loaded(path=str(record.path), n_ctx=512, n_ctx_train=512,
                             n_gpu_layers=0, n_threads=1, template_source="gguf",
                             template_sha256="0", load_seconds=0.1)
    unloaded: list[bool] = []

    def unload_chat() -> None:
        unloaded.append(True)
        client.unload()

    tab = make_tab(client=client, unload_chat=unload_chat)
    tab.confirm = lambda title, text: True
    tab.remove_button.click()
    assert "loaded in the chat right now" in tab.status.text()
    assert tab.status.action_button.isVisible()
    assert tab.status.action_button.text() == "Unload from chat"
    tab.status.action_button.click()
    assert unloaded and "Unloaded tiny" in tab.status.text()
    tab.remove_button.click()
    assert workspace.library.list() == [] and not record.path.exists()
