"""Every row of the architecture table, proven: train, export, and compare in llama.cpp.

For each architecture a tiny random model is written as GGUF the way llama.cpp's
converter writes it (``tests/arch_factory.py``), loaded through Hearth's own training
loader, given a LoRA adapter by a few real optimizer steps, and exported twice: merged
into the weights (F16 GGUF) and as a GGUF adapter applied live to the base. llama.cpp's
logits of both must match PyTorch's (base + adapter) on the same tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

from app.models.architectures import (
    ARCHITECTURES,
    UnsupportedArchitecture,
    architecture,
    gguf_name_of,
)
from app.models.model_info import ModelInfo
from backends.export.adapter_gguf import export_adapter
from backends.export.gguf_export import ExportError, export_gguf
from backends.export.merge import merge_lora
from backends.export.pipeline import base_weights
from backends.inference import llama_compat
from backends.training import teach_gate
from backends.training.base_model import load_base
from tests.arch_factory import ARCHS, write_tiny_arch_gguf

RANK, ALPHA = 8, 16
TOKENS = [1, 450, 300, 77, 900, 12, 600, 5, 250, 88, 31, 702]


@pytest.fixture(scope="module")
def arch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("archs")


def _trained(base_model: torch.nn.Module) -> torch.nn.Module:
    """LoRA on every linear layer, moved by a few real steps towards a fixed target."""
    torch.manual_seed(0)
    model = get_peft_model(base_model, LoraConfig(r=RANK, lora_alpha=ALPHA,
                                                  target_modules="all-linear",
                                                  lora_dropout=0.0))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    ids = torch.tensor([TOKENS])
    model.train()
    for _ in range(4):
        loss = model(input_ids=ids, labels=ids).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def _llama_logits(path: Path, adapter: Path | None = None) -> np.ndarray:
    llm = llama_compat.open_model(str(path), n_ctx=64, n_threads=2, logits_all=True,
                                  extra_bufts=False)
    try:
        if adapter is not None:
            llama_compat.use_adapter(llm, llama_compat.load_adapter(llm, str(adapter)))
        llm.eval(TOKENS)
        return np.array(llm.scores[:len(TOKENS)])
    finally:
        llm.close()


def _agree(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    top1 = float((got.argmax(-1) == expected.argmax(-1)).mean())
    diff = float(np.abs(got - expected).max())
    assert np.abs(expected).max() > 0.5, f"{what}: logits too small to compare"
    # F16 weights: differences of a few thousandths on logits of size ~1-10; a random
    # tiny model has near-ties, so a rare top-1 flip is allowed.
    assert top1 >= 0.9 and diff < 0.05, f"{what}: top-1 agreement {top1:.2f}, max diff {diff}"


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_architecture_trains_exports_and_matches_in_llama_cpp(name: str, arch_dir: Path
                                                              ) -> None:
    gguf_path = write_tiny_arch_gguf(name, arch_dir / f"{name}.gguf")
    base = load_base(gguf_path)
    trained = _trained(base.model)
    state = get_peft_model_state_dict(trained)
    with torch.no_grad():
        expected = trained(input_ids=torch.tensor([TOKENS])).logits[0].numpy()
        with trained.disable_adapter():
            plain = trained(input_ids=torch.tensor([TOKENS])).logits[0].numpy()
    assert np.abs(expected - plain).max() > 0.05, "the adapter changed nothing"

    merged = merge_lora(base_weights(trained), state, ALPHA, RANK)
    out = export_gguf(gguf_path, merged, arch_dir / f"{name}-merged.gguf", f"{name}-tuned")
    _agree(_llama_logits(out), expected, f"{name} merged")

    adapter = export_adapter(gguf_path, state, ALPHA, arch_dir / f"{name}-lora.gguf",
                             f"{name}-lora")
    _agree(_llama_logits(gguf_path, adapter), expected, f"{name} adapter")
    _agree(_llama_logits(gguf_path), plain, f"{name} base")


def test_the_table_names_every_tested_architecture() -> None:
    assert {a.gguf_name for a in ARCHITECTURES} == {a.gguf_arch for a in ARCHS.values()}
    # A safetensors folder's transformers model_type finds its row through its GGUF name.
    assert architecture(gguf_name_of("mistral")).gguf_name == "llama"
    assert architecture(gguf_name_of("gemma3_text")).norm_shift == 1.0


def test_an_architecture_outside_the_table_is_refused_with_the_list(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedArchitecture) as err:
        architecture("mamba")
    assert "'mamba'" in str(err.value) and "qwen3" in str(err.value) and "gemma3" in str(err.value)
    with pytest.raises(UnsupportedArchitecture):
        architecture(gguf_name_of("gpt2"))

    import gguf
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "mamba")
    writer.add_name("m")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ExportError, match="cannot fine-tune 'mamba'"):
        export_gguf(tmp_path / "m.gguf", {"x": torch.zeros(1)}, tmp_path / "o.gguf", "o")
    assert not (tmp_path / "o.gguf").exists()


def test_an_adapter_for_another_base_is_refused_by_name(tmp_path: Path) -> None:
    qwen = write_tiny_arch_gguf("qwen2", tmp_path / "q.gguf")
    llama = write_tiny_arch_gguf("llama", tmp_path / "l.gguf")
    base = load_base(llama)
    state = get_peft_model_state_dict(_trained(base.model))
    adapter = export_adapter(llama, state, ALPHA, tmp_path / "l-lora.gguf", "l-lora")
    llm = llama_compat.open_model(str(qwen), n_ctx=32, n_threads=1, extra_bufts=False)
    try:
        with pytest.raises(llama_compat.AdapterError, match="another base model"):
            llama_compat.load_adapter(llm, str(adapter))
    finally:
        llm.close()


def test_a_base_without_a_template_exports_with_the_one_it_was_trained_with(
        tmp_path: Path) -> None:
    import gguf

    path = write_tiny_arch_gguf("gemma3", tmp_path / "g.gguf", chat_template=False,
                                specials=("<start_of_turn>", "<end_of_turn>"))
    base = load_base(path)
    assert base.template.source == "family:gemma"  # its family's, as chat picks it
    weights = base_weights(get_peft_model(base.model, LoraConfig(
        r=2, target_modules="all-linear")))
    out = export_gguf(path, weights, tmp_path / "o.gguf", "o",
                      chat_template=base.template.text)
    written = gguf.GGUFReader(str(out)).fields["tokenizer.chat_template"].contents()
    assert written == base.template.text and "<start_of_turn>" in written

    plain = write_tiny_arch_gguf("gemma3", tmp_path / "p.gguf", chat_template=False)
    assert load_base(plain).template.source == "fallback:chatml"  # no turns to learn in


def test_a_base_outside_the_table_is_refused_before_any_training(tmp_path: Path) -> None:
    """The run is never created, and the Fine-tune tab's plan says why before Start."""
    from app.finetune.datasets import load_dataset
    from app.finetune.plan import model_facts
    from app.finetune.runs.folder import create_run
    from app.finetune.settings import LoraSettings
    from app.models.library import ModelRecord
    from app.paths import resolve_home
    from tests.finetune_fixtures import fact_rows, write_jsonl

    home = resolve_home(tmp_path / "home")
    record = ModelRecord(name="mamba-base", path=tmp_path / "m.gguf", source="imported",
                         added_at="", info=ModelInfo(architecture="mamba", parameters=1000))
    dataset = load_dataset(write_jsonl(tmp_path / "facts.jsonl", fact_rows()))
    with pytest.raises(UnsupportedArchitecture, match="cannot fine-tune 'mamba'.*gemma3"):
        create_run(home, record, dataset, LoraSettings())
    assert not list(home.runs.glob("*"))
    refusal = model_facts(record).refusal
    assert refusal is not None and "qwen3" in refusal
    llama = ModelRecord(name="l", path=tmp_path / "l.gguf", source="imported", added_at="",
                        info=ModelInfo(architecture="llama"))
    assert model_facts(llama).refusal is None


@pytest.mark.parametrize("name", sorted(ARCHS))
def test_greedy_answers_are_the_same_with_a_batchs_opening_run_once(
        name: str, arch_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Teach's answers (``teach_gate.greedy``) run the opening a batch's prompts share
    once and hand its cache to every row, their padding after it: each family's cache
    (Gemma's sliding windows among them) and the LoRA model must give the answers each
    row gets running its whole prompt. A wrong position or mask is no near tie: it
    changes the tokens of every answer."""
    gguf_path = write_tiny_arch_gguf(name, arch_dir / f"{name}-greedy.gguf")
    base = load_base(gguf_path)
    model = _trained(base.model)
    asked = [[{"role": "user", "content": q}] for q in (
        "What is the capital of France?", "Say hi.",
        "How do I boil an egg? Tell me every step, please, and what can go wrong.")]
    rows = [teach_gate.prompt_ids(base.tokenizer, base.template, m) for m in asked]
    assert teach_gate.shared_prefix(rows) >= teach_gate.SHARED_PREFIX_MIN, \
        "the opening is not shared: nothing is tested"
    shared = teach_gate.greedy(model, base.tokenizer, base.template, asked,
                               torch.device("cpu"), max_new_tokens=16)
    monkeypatch.setattr(teach_gate, "SHARED_PREFIX_MIN", 1 << 30)
    each = teach_gate.greedy(model, base.tokenizer, base.template, asked,
                             torch.device("cpu"), max_new_tokens=16)
    assert [r.reply_ids for r in shared] == [r.reply_ids for r in each]
    assert all(r.reply_ids for r in shared)
