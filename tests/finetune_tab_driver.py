"""Driving the Fine-tune tab as a person does, shared by its tests: open it over a home,
choose a data file, close it with no worker left behind; the small settings a test run
uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytestqt.qtbot import QtBot

from app.chat.corrections import CorrectionStore
from app.finetune.datasets import Dataset, DatasetError
from app.finetune.settings import ExportSettings, LoraSettings
from app.workspace import Workspace
from ui.finetune.finetune_tab import FineTuneTab

FAST = LoraSettings(rank=4, alpha=8, learning_rate=1e-3, max_steps=6, batch_size=4,
                    max_seq_len=128, eval_every=2, checkpoint_every=2)
EXPORT = ExportSettings(fidelity_samples=1)
PLENTY = 1 << 40
RUN_TIMEOUT = 300_000  # ms; a worker start imports torch (slow on a busy 2-core box)


def open_tab(qtbot: QtBot, ws: Workspace, **kwargs: Any) -> FineTuneTab:
    """The tab over ``ws``, with plenty of memory unless the test says otherwise."""
    kwargs.setdefault("memory_available", lambda: PLENTY)
    tab = FineTuneTab(ws, kwargs.pop("corrections", CorrectionStore(ws.library.conn)),
                      **kwargs)
    qtbot.addWidget(tab)
    tab.resize(1100, 720)
    return tab


def choose(qtbot: QtBot, tab: FineTuneTab, path: Path, settings: LoraSettings = FAST
           ) -> Dataset | DatasetError:
    """Load ``path`` as the person would, then set the settings; the check's result."""
    with qtbot.waitSignal(tab.dataset_checked, timeout=20_000) as checked:
        tab.setup.load_file(path)
    tab.setup.settings_form.set_values(settings, EXPORT)
    return checked.args[0]


def stop(tab: FineTuneTab) -> None:
    """Close the tab and check that no worker outlives it."""
    tab.shutdown()
    assert tab.bridge is None or not tab.bridge.alive
    if tab.compare_dialog is not None:
        assert not any(s.bridge.client.alive for s in tab.compare_view.sides)
