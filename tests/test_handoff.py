"""Hand-off: a model written for Ollama, peft/vLLM/TGI and transformers, and checked there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from app.cli.main import main as cli_main
from app.inference.protocol import SamplingParams
from app.models.handoff import (
    HandoffError,
    HandoffFormat,
    export_model,
    model_stops,
    modelfile_text,
)
from app.models.library import find_starter_gguf
from app.models.provenance import Provenance
from app.workspace import Workspace
from backends.training.base_model import load_base

IDS = [1, 450, 300, 77, 900, 12, 600, 5]


@pytest.fixture
def tuned(workspace: Workspace, tiny_gguf: Path, hearth_cache: Path,
          tmp_path: Path):
    """A library model made by a fine-tune: its GGUF, its base and its saved adapter."""
    base = load_base(tiny_gguf, cache_dir=hearth_cache)
    torch.manual_seed(1)
    peft_model = get_peft_model(base.model, LoraConfig(
        r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)).eval()
    adapter_dir = tmp_path / "run" / "adapter"
    peft_model.save_pretrained(str(adapter_dir), safe_serialization=True)
    with torch.no_grad():
        expected = peft_model(input_ids=torch.tensor([IDS])).logits[0]
    record = workspace.library.register(
        tiny_gguf, "tiny-tuned", source="finetune",
        provenance=Provenance(adapter_dir=str(adapter_dir), base_model="tiny",
                              base_path=str(tiny_gguf)))
    return record, expected


def test_peft_folder_loads_with_peft_and_reproduces_the_logits(
        tuned, tiny_gguf: Path, hearth_cache: Path, tmp_path: Path) -> None:
    record, expected = tuned
    result = export_model(record, tmp_path / "out", HandoffFormat.PEFT, SamplingParams())
    folder = tmp_path / "out" / "tiny-tuned-lora"
    assert {p.name for p in result.files} == {"adapter_config.json",
                                              "adapter_model.safetensors"}
    assert json.loads((folder / "adapter_config.json").read_text())[
        "base_model_name_or_path"] == "tiny"
    fresh = load_base(tiny_gguf, cache_dir=hearth_cache).model
    loaded = PeftModel.from_pretrained(fresh, str(folder)).eval()
    with torch.no_grad():
        got = loaded(input_ids=torch.tensor([IDS])).logits[0]
    assert torch.allclose(got, expected, atol=1e-5)
    with pytest.raises(HandoffError, match="already exists"):
        export_model(record, tmp_path / "out", HandoffFormat.PEFT, SamplingParams())


def test_safetensors_folder_loads_in_transformers_with_the_merged_weights(
        tuned, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    record, expected = tuned
    result = export_model(record, tmp_path / "st", HandoffFormat.SAFETENSORS,
                          SamplingParams())
    names = {p.name for p in result.files}
    assert "config.json" in names and "model.safetensors" in names
    assert "tokenizer.json" in names
    folder = tmp_path / "st" / "tiny-tuned"
    model = AutoModelForCausalLM.from_pretrained(str(folder), use_safetensors=True).eval()
    with torch.no_grad():
        got = model(input_ids=torch.tensor([IDS])).logits[0]
    assert torch.allclose(got, expected, atol=1e-4)
    tok = AutoTokenizer.from_pretrained(str(folder))
    assert "<|im_start|>" in tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                                     tokenize=False)


def test_ollama_modelfile_has_the_gguf_stops_sampling_and_system(
        workspace: Workspace, tiny_gguf: Path, tmp_path: Path) -> None:
    record = workspace.library.register(tiny_gguf, "tiny")
    workspace.settings.remember_sampling("tiny", SamplingParams(temperature=0.3, top_k=20))
    workspace.save_settings()
    code = cli_main(["--home", str(workspace.home.root), "export", "tiny", "--to",
                     str(tmp_path / "ol"), "--format", "ollama", "--system",
                     'Be brief. Say "hi"\nPARAMETER temperature 9'])
    assert code == 0
    text = (tmp_path / "ol" / "Modelfile").read_text()
    lines = text.splitlines()
    assert lines[0] == "FROM ./tiny.gguf"
    assert 'PARAMETER stop "<|im_end|>"' in lines
    # The system prompt stays one quoted value; its text cannot add a parameter.
    assert 'SYSTEM "Be brief. Say \\"hi\\"\\nPARAMETER temperature 9"' in lines
    assert [ln for ln in lines if ln.startswith("PARAMETER temperature")] == \
        ["PARAMETER temperature 0.3"]
    assert "PARAMETER top_k 20" in lines
    assert (tmp_path / "ol" / "tiny.gguf").stat().st_size == record.path.stat().st_size


def test_modelfile_uses_the_models_sampling() -> None:
    text = modelfile_text("m.gguf", ["<end>"], SamplingParams(temperature=0.2, top_p=0.5,
                                                              seed=7, max_tokens=64))
    assert "PARAMETER temperature 0.2" in text and "PARAMETER top_p 0.5" in text
    assert "PARAMETER seed 7" in text and "PARAMETER num_predict 64" in text
    with pytest.raises(HandoffError, match="control characters"):
        modelfile_text("m.gguf", ["\x1b[2J"], SamplingParams())


def test_a_model_that_was_not_fine_tuned_has_no_adapter_to_hand_off(
        workspace: Workspace, tiny_gguf: Path, tmp_path: Path) -> None:
    record = workspace.library.register(tiny_gguf, "plain")
    with pytest.raises(HandoffError, match="not fine-tuned in Hearth"):
        export_model(record, tmp_path, HandoffFormat.PEFT, SamplingParams())


def test_token_texts_reads_only_the_asked_entries(starter_gguf: Path) -> None:
    from app.models.gguf_file import read_gguf
    from app.models.gguf_vocab import token_texts

    meta = read_gguf(starter_gguf).metadata
    eos = meta["tokenizer.ggml.eos_token_id"]
    assert token_texts(starter_gguf, [eos, 10**9, -1]) == {eos: "<|im_end|>"}


def test_the_models_tab_exports_for_ollama_off_the_gui_thread(
        qtbot, workspace: Workspace, tiny_gguf: Path, tmp_path: Path) -> None:
    from ui.models.export_dialog import ExportDialog
    from ui.models.models_tab import ModelsTab

    workspace.library.register(tiny_gguf, "tiny")
    tab = ModelsTab(workspace)
    qtbot.addWidget(tab)
    tab.table.selectRow(0)
    assert tab.export_button.isEnabled()
    dialog = ExportDialog(workspace, workspace.library.get("tiny"), tab)
    qtbot.addWidget(dialog)
    labels = [dialog.format.itemText(i) for i in range(dialog.format.count())]
    assert not any("peft" in label for label in labels)  # not a Hearth fine-tune
    dialog.format.setCurrentIndex(dialog.format.findData("ollama"))
    dialog.folder.setText(str(tmp_path / "out"))
    dialog.system.setText("<b>Be brief</b>")
    dialog.start()
    qtbot.waitUntil(lambda: dialog.result is not None, timeout=30_000)
    assert (tmp_path / "out" / "Modelfile").read_text().count('SYSTEM "<b>Be brief</b>"') == 1
    assert "ollama create tiny" in dialog.status.text()
    dialog.start()  # again: nothing is overwritten, the reason is shown
    qtbot.waitUntil(lambda: "already exists" in dialog.status.text(), timeout=30_000)
    dialog.reject()


@pytest.mark.skipif(find_starter_gguf() is None, reason="the tiny models borrow its tokenizer")
def test_a_base_without_a_template_stops_at_its_family_end_of_turn(tmp_path: Path) -> None:
    """Gemma 3 270M has no template and no EOT id: chat and Teach speak Gemma's turns, so
    its Ollama hand-off must stop at <end_of_turn> too, or a taught answer never ends."""
    from tests.arch_factory import write_tiny_arch_gguf

    gemma = write_tiny_arch_gguf("gemma3", tmp_path / "g.gguf", chat_template=False,
                                 specials=("<start_of_turn>", "<end_of_turn>"))
    assert "<end_of_turn>" in model_stops(gemma)
    plain = write_tiny_arch_gguf("gemma3", tmp_path / "p.gguf", chat_template=False)
    assert "<end_of_turn>" not in model_stops(plain)  # no such token: raw completion
