"""Export round trip: merged weights -> GGUF F16 -> llama.cpp gives the same logits."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

from backends.export.gguf_export import export_gguf, permute_qk
from backends.export.merge import merge_lora
from backends.export.pipeline import base_weights
from backends.training.base_model import load_base

llama_cpp = pytest.importorskip("llama_cpp")


def test_permutation_is_the_inverse_of_transformers_loader() -> None:
    w = np.arange(8 * 16 * 3, dtype=np.float32).reshape(8 * 16, 3)
    undo = LlamaTensorProcessor()._reverse_permute_weights
    np.testing.assert_array_equal(undo(permute_qk(w, 8, 8), 8, 8), w)
    np.testing.assert_array_equal(undo(permute_qk(w[:32], 8, 2), 8, 2), w[:32])


def test_export_round_trip_in_llama_cpp(tiny_gguf: Path, hearth_cache: Path,
                                        tmp_path: Path) -> None:
    base = load_base(tiny_gguf, cache_dir=hearth_cache)
    torch.manual_seed(3)
    model = get_peft_model(base.model, LoraConfig(r=8, lora_alpha=16,
                                                  target_modules="all-linear",
                                                  init_lora_weights=False)).eval()
    merged = merge_lora(base_weights(model), get_peft_model_state_dict(model), 16, 8)
    out = export_gguf(tiny_gguf, merged, tmp_path / "tuned.gguf", "tuned-tiny")

    # Metadata: everything copied, only the name and file type changed.
    src, dst = gguf.GGUFReader(str(tiny_gguf)), gguf.GGUFReader(str(out))
    assert dst.fields["general.name"].contents() == "tuned-tiny"
    assert dst.fields["general.file_type"].contents() == gguf.LlamaFileType.MOSTLY_F16
    for key in ("tokenizer.chat_template", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.bos_token_id", "tokenizer.ggml.pre", "llama.block_count"):
        assert dst.fields[key].contents() == src.fields[key].contents(), key
    assert dst.fields["tokenizer.ggml.tokens"].contents() == \
        src.fields["tokenizer.ggml.tokens"].contents()
    assert [t.name for t in dst.tensors] == [t.name for t in src.tensors]
    assert "output.weight" not in {t.name for t in dst.tensors}  # tied, as in the base

    text = base.template.render([{"role": "user", "content": "What is Quillport?"},
                                 {"role": "assistant", "content": "A city."}], False)
    ids = base.tokenizer(text)["input_ids"]
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    llm = llama_cpp.Llama(model_path=str(out), n_ctx=128, logits_all=True, verbose=False)
    try:
        llm.eval(ids)
        got = np.array(llm.scores[:len(ids)])
    finally:
        llm.close()
    # F16 weights: differences of a few thousandths on logits of size ~10.
    assert np.abs(got - expected).max() < 0.05
    # A random tiny model has near-ties, so allow a rare top-1 flip.
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.9
    assert np.abs(expected).max() > 1.0  # the comparison is not between near-zeros
