"""Teach from chat, the whole round trip on the real starter model, through the window:
wrong replies corrected in chats, trained on from the Fine-tune tab, and the tuned
model, chatted with through the inference worker, answers with the corrections.

Opt-in (``HEARTH_GUI_E2E=1``): it trains and exports the 135M model, about ten minutes
on a busy 2-core machine (575 s measured), and the engine's own end-to-end test
(tests/test_finetune_e2e.py) already proves the same training path from the CLI.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.chat.corrections import CorrectionStore
from app.finetune.settings import ExportSettings, LoraSettings
from app.inference import protocol as p
from app.inference.client import InferenceClient
from app.models.library import STARTER_NAME, find_starter_gguf
from app.workspace import open_workspace
from tests.finetune_fixtures import FACTS, fact_rows
from ui.finetune.finetune_tab import FineTuneTab

ANSWERS = ["Quillport", "Odessa Fernwick", "turquoise", "plumbleberry stew", "seven moons"]
# The engine's own end-to-end settings (tests/test_finetune_e2e.py).
TEACH = LoraSettings(rank=16, alpha=32, learning_rate=1e-3, max_steps=14, batch_size=4,
                     max_seq_len=128)


@pytest.mark.slow
@pytest.mark.skipif(find_starter_gguf() is None, reason="the starter model is not installed")
@pytest.mark.skipif(not os.environ.get("HEARTH_GUI_E2E"),
                    reason="about ten minutes on a small CPU; set HEARTH_GUI_E2E=1 to run")
def test_corrections_teach_the_starter_model_from_the_tab(
        qtbot, tmp_path: Path, hearth_cache: Path) -> None:
    started = time.monotonic()
    ws = open_workspace(tmp_path / "home")  # registers the starter model
    corrections = CorrectionStore(ws.library.conn)
    for row in fact_rows():  # 25 chats, each with a wrong reply the person corrects
        question, answer = (m["content"] for m in row["messages"])
        conv = ws.store.create(title=question[:40], model=STARTER_NAME)
        ws.store.add_message(conv.id, "user", question)
        wrong = ws.store.add_message(conv.id, "assistant", "I'm not sure about that.")
        corrections.add_from_conversation(ws.store, wrong.id, answer)
    tab = FineTuneTab(ws, corrections, memory_available=lambda: 1 << 40)
    qtbot.addWidget(tab)
    client = InferenceClient()
    try:
        assert tab.set_model(STARTER_NAME)
        with qtbot.waitSignal(tab.dataset_checked, timeout=20_000):
            tab.setup.corrections_radio.setChecked(True)
        tab.setup.select_preset("quick")
        tab.setup.settings_form.set_values(TEACH, ExportSettings(quant="q8_0"))
        with qtbot.waitSignal(tab.run_ended, timeout=1_500_000) as ended:
            qtbot.mouseClick(tab.setup.start_button, Qt.MouseButton.LeftButton)
        assert ended.args[1] == "finished", tab.training.log_view.toPlainText()
        trained = time.monotonic() - started
        assert tab.tuned_model is not None
        assert "The exported model matches the trained one" in \
            tab.training.summary_view.toPlainText()

        client.start()
        client.load_blocking(tab.tuned_model.path, n_ctx=512)
        for (question, _), answer in zip(FACTS, ANSWERS, strict=True):
            done = list(client.stream_chat([{"role": "user", "content": question}],
                                           p.SamplingParams(temperature=0.0, max_tokens=40,
                                                            seed=1)))[-1]
            assert isinstance(done, p.Done), done
            assert answer.lower() in done.text.lower(), (question, done.text)
        print(f"corrections -> tuned starter model in {trained:.0f}s; "
              f"whole round trip {time.monotonic() - started:.0f}s")
    finally:
        client.close()
        tab.shutdown()
        ws.close()
