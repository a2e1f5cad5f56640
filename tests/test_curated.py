"""The recommended models are current, say size, licence and whether Hearth can
fine-tune them (from the architectures table), and the starter says it is a demo."""

from __future__ import annotations

import json
from importlib import resources

from pytestqt.qtbot import QtBot

from app.models import architectures
from app.models.curated import after_starter, load_curated, starter_note
from app.models.memory_fit import SystemMemory
from app.units import GiB
from app.workspace import Workspace
from ui.main_window import MainWindow
from ui.models.hub_view import HubView


def test_the_list_has_the_current_small_families_with_their_facts() -> None:
    curated = load_curated()
    titles = " ".join(m.title for m in curated)
    for family in ("Qwen3", "Gemma 3", "Llama 3.2", "Phi-4-mini", "SmolLM3"):
        assert family in titles
    for old in ("Qwen2.5", "Gemma 2", "Phi-3.5"):
        assert old not in titles
    for m in curated:
        assert m.approx_size_mb > 0 and m.licence and m.parameters.endswith("B")
        assert m.file.endswith(".gguf") and "/" in m.repo


def test_fine_tunable_is_read_from_the_architectures_table(monkeypatch) -> None:
    curated = {m.title: m for m in load_curated()}
    known = {a.gguf_name for a in architectures.ARCHITECTURES}
    for m in curated.values():
        assert m.trainable == (m.architecture in known)
    assert curated["Qwen3 4B"].trainable and not curated["SmolLM3 3B"].trainable
    # The list holds no copy of the table: a row added there changes the answer here.
    monkeypatch.setattr(architectures, "_BY_GGUF", {
        **architectures._BY_GGUF,
        "smollm3": architectures.Architecture("smollm3", "SmolLM3")})
    assert curated["SmolLM3 3B"].trainable
    raw = json.loads((resources.files("resources") / "curated_models.json").read_text())
    assert all("trainable" not in m for m in raw["models"])


def test_the_hub_view_shows_size_licence_and_fine_tune(qtbot: QtBot,
                                                       workspace: Workspace) -> None:
    view = HubView(workspace)
    qtbot.addWidget(view)
    try:
        headers = [view.results.horizontalHeaderItem(c).text()
                   for c in range(view.results.columnCount())]
        assert headers == ["Model", "Params", "Size", "Licence", "Fine-tune", "Good at"]
        rows = {view.results.item(r, 0).text(): [view.results.item(r, c).text()
                                                 for c in range(6)]
                for r in range(view.results.rowCount())}
        assert rows["SmolLM3 3B"][4] == "chat only" and rows["Qwen3 4B"][4] == "yes"
        assert rows["Phi-4-mini Instruct"][3] == "MIT"
    finally:
        view.shutdown()


def test_the_starter_says_it_is_a_demo_and_names_the_next_model(
        qtbot: QtBot, home_dir) -> None:
    from app.workspace import open_workspace

    nxt = after_starter()
    assert nxt is not None and nxt.trainable
    note = starter_note()
    assert "demo model" in note and nxt.title in note
    workspace = open_workspace(home_dir)  # registers the bundled starter
    window = MainWindow(workspace)
    qtbot.addWidget(window)
    try:
        assert window.chat.model_name and "135M" in window.chat.model_name
        window.chat.new_conversation()
        assert note in window.chat_page.view.empty.text()
        window.models_tab.system = SystemMemory(16 * GiB, 8 * GiB)
        window.models_tab.refresh()
        assert window.models_tab.starter_note.text() == note
    finally:
        window.close()
        workspace.close()
