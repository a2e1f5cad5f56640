"""The Models tab names the chat template the chat really uses (it said "ChatML
fallback" for a base without one, which is spoken to in plain text, or in its family's
turns when its vocabulary has them). The tab and the worker make one decision."""

from __future__ import annotations

from multiprocessing import Pipe
from pathlib import Path

from pytestqt.qtbot import QtBot

from app.chat.template_choice import source_for_file
from app.inference import protocol as p
from app.models.memory_fit import SystemMemory
from app.units import GiB
from app.workspace import Workspace
from tests.gguf_factory import CHATML, write_tiny_gguf
from tests.tiny_model import write_tiny_llama
from ui.models.library_model import TEMPLATE_COLUMN
from ui.models.models_tab import ModelsTab


def _column(qtbot: QtBot, tab: ModelsTab) -> dict[str, str]:
    model = tab.model
    qtbot.waitUntil(lambda: len(model.templates) == len(model.records), timeout=10_000)
    return {r.name: model.data(model.index(row, TEMPLATE_COLUMN))
            for row, r in enumerate(model.records)}


def test_each_model_is_named_with_the_template_the_chat_uses(
        qtbot: QtBot, workspace: Workspace, tmp_path: Path) -> None:
    library, settings = workspace.library, workspace.settings
    library.import_file(write_tiny_gguf(tmp_path / "bare.gguf"), "bare")
    library.import_file(write_tiny_gguf(tmp_path / "own.gguf", chat_template=CHATML), "own")
    library.import_file(write_tiny_llama(tmp_path / "smol.gguf", chat_template=""), "smol")
    library.import_file(write_tiny_gguf(tmp_path / "picked.gguf", seed=1), "picked")
    settings.remember_template("picked", "gemma")
    tab = ModelsTab(workspace, probe_system=lambda: SystemMemory(16 * GiB, 8 * GiB))
    qtbot.addWidget(tab)
    tab.resize(1200, 400)
    tab.show()
    try:
        assert _column(qtbot, tab) == {
            "bare": "none: plain text completion",  # not "ChatML fallback"
            "own": "the model's own",
            "smol": "ChatML (its family's; the file has none)",
            "picked": "Gemma (chosen)"}
        tab.grab().save(str(tmp_path / "models.png"))
    finally:
        tab.shutdown()


def test_the_tab_and_the_worker_decide_alike(tmp_path: Path) -> None:
    from backends.inference.llama_worker import Channel, Worker

    path = write_tiny_llama(tmp_path / "smol.gguf", chat_template="")
    ours, theirs = Pipe()
    worker = Worker(Channel(ours))
    try:
        worker.load(p.Load(str(path), n_ctx=256))
        events = []
        while theirs.poll(0.1):
            events.append(p.decode(theirs.recv_bytes()))
        loaded = events[-1]
        assert isinstance(loaded, p.Loaded)
        assert loaded.template_source == source_for_file(path, False, "llama") == \
            "family:chatml"
    finally:
        worker.unload()
        theirs.close()
        ours.close()
