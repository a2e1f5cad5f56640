"""Base models without a chat template: the family's template, or plain completion.

A Gemma 3 base once answered "The capital of France is" with ChatML's markers because
Hearth wrapped its text in ChatML. Now the file's template wins, then the family's
(when the vocabulary has its markers, labelled ``family:``), then raw completion.
"""

from __future__ import annotations

from multiprocessing import Pipe
from pathlib import Path

import pytest

from app.chat.template_choice import CHOICES, FAMILIES, choose_template, end_of_turn
from app.inference import protocol as p
from backends.inference.llama_worker import Worker
from backends.inference.worker_channel import Channel
from tests.arch_factory import write_tiny_arch_gguf

GEMMA_MARKERS = ("<start_of_turn>", "<end_of_turn>")


def _has(*tokens: str):
    return lambda t: t in tokens


def test_the_files_template_wins_then_the_family_then_raw() -> None:
    assert choose_template("{{ 'x' }}", "gemma3", _has(*GEMMA_MARKERS)).source == "gguf"
    assert choose_template(None, "gemma3", _has(*GEMMA_MARKERS)).source == "family:gemma"
    assert choose_template(None, "gemma3", _has()).source == "raw"
    assert choose_template("", "mamba", _has(*GEMMA_MARKERS)).source == "raw"
    llama3 = _has("<|start_header_id|>", "<|eot_id|>")
    assert choose_template(None, "llama", llama3).source == "family:llama3"
    assert choose_template(None, "llama", _has("<|im_start|>", "<|im_end|>")).source == \
        "family:chatml"
    # The person's choice beats the file.
    assert choose_template("{{ 'x' }}", "llama", _has(), "raw").source == "raw"
    assert choose_template("{{ 'x' }}", "llama", _has(), "gemma").source == "chosen:gemma"
    assert choose_template(None, "llama", _has(), "nonsense").source == "raw"
    assert set(CHOICES) >= {"auto", "raw", *FAMILIES}


def test_family_templates_render_their_turns() -> None:
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Capital of France?"}]
    gemma = choose_template(None, "gemma3", _has(*GEMMA_MARKERS), bos_token="<bos>")
    assert gemma.render(msgs) == ("<bos><start_of_turn>user\nBe brief.\n\nCapital of "
                                  "France?<end_of_turn>\n<start_of_turn>model\n")
    assert end_of_turn(gemma) == "<end_of_turn>"
    llama3 = choose_template(None, "llama", _has("<|start_header_id|>", "<|eot_id|>"))
    assert llama3.render(msgs[1:]).endswith(
        "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    phi = choose_template(None, "phi3", _has("<|user|>", "<|end|>"))
    assert phi.render(msgs[1:]) == "<|user|>\nCapital of France?<|end|>\n<|assistant|>\n"
    raw = choose_template(None, "gemma3", _has())
    assert raw.render([{"role": "user", "content": "The capital of France is"}]) == \
        "The capital of France is"
    assert end_of_turn(raw) is None


def _load(path: Path, template: str = "auto") -> tuple[Worker, p.Loaded]:
    ours, theirs = Pipe()
    worker = Worker(Channel(ours))
    worker.load(p.Load(str(path), n_ctx=256, extra_bufts=False, template=template))
    events = []
    while theirs.poll(0.1):
        events.append(p.decode(theirs.recv_bytes()))
    assert isinstance(events[-1], p.Loaded), events
    return worker, events[-1]


def _prompt(worker: Worker, text: str) -> str:
    tokens, _ = worker.fit_prompt(p.Chat("r", [{"role": "user", "content": text}]))
    return worker.llm.detokenize(tokens, special=True).decode()


@pytest.mark.parametrize(("specials", "template", "source", "expected"), [
    ((), "auto", "raw", "The capital of France is"),
    (GEMMA_MARKERS, "auto", "family:gemma",
     "<start_of_turn>user\nThe capital of France is<end_of_turn>\n<start_of_turn>model\n"),
    (GEMMA_MARKERS, "raw", "raw", "The capital of France is"),
])
def test_a_gemma_base_without_a_template_in_the_real_worker(
        tmp_path: Path, specials: tuple[str, ...], template: str, source: str,
        expected: str) -> None:
    path = write_tiny_arch_gguf("gemma3", tmp_path / "g.gguf", chat_template=False,
                                specials=specials)
    worker, loaded = _load(path, template)
    try:
        assert loaded.template_source == source
        prompt = _prompt(worker, "The capital of France is")
        bos = worker.template.bos_token  # this tiny vocabulary's BOS is "<|im_start|>"
        assert prompt == bos + expected
        assert worker.template_stops == (["<end_of_turn>"] if source.startswith("family")
                                         else [])
    finally:
        worker.unload()


def test_the_template_is_chosen_per_model_in_the_chat_settings(
        qtbot, workspace, tmp_path: Path) -> None:
    """The choice is kept per model in the settings file and the worker loads with it."""
    from app.settings import load_settings
    from ui.chat.chat_view_model import ChatViewModel, ModelState
    from ui.chat.inference_bridge import InferenceBridge
    from ui.chat.settings_panel import SettingsPanel

    path = write_tiny_arch_gguf("llama", tmp_path / "m.gguf")
    workspace.library.register(path, "base-model")
    chat = ChatViewModel(workspace, InferenceBridge())
    panel = SettingsPanel(chat)
    qtbot.addWidget(panel)
    try:
        chat.load_model("base-model")
        qtbot.waitUntil(lambda: chat.state == ModelState.READY, timeout=120_000)
        assert chat.loaded.template_source == "gguf"
        assert panel.template.currentData() == "auto"
        panel.template.setCurrentIndex(panel.template.findData("raw"))
        panel.reload_button.click()
        qtbot.waitUntil(lambda: chat.state == ModelState.READY and chat.loaded is not None
                        and chat.loaded.template_source == "raw", timeout=120_000)
        assert workspace.settings.template_for("base-model") == "raw"
        assert load_settings(workspace.home.settings_file).template_for("base-model") == "raw"
        assert workspace.settings.template_for("other") == "auto"
    finally:
        chat.shutdown()
