"""Merging is pure and idempotent, and equals PEFT's base + adapter."""

from __future__ import annotations

import torch
from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
from transformers import LlamaConfig, LlamaForCausalLM

from backends.export.merge import merge_lora
from backends.export.pipeline import base_weights


def _tiny_peft(seed: int = 0):
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, tie_word_embeddings=True)
    model = LlamaForCausalLM(config).eval()
    # init_lora_weights=False gives B != 0, so the merge has something to do.
    lora = LoraConfig(r=4, lora_alpha=12, target_modules="all-linear",
                      init_lora_weights=False)
    return get_peft_model(model, lora).eval()


def test_merge_equals_base_plus_adapter_and_peft_merge() -> None:
    peft_model = _tiny_peft()
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
    adapter = get_peft_model_state_dict(peft_model)
    base = {k: v.clone() for k, v in base_weights(peft_model).items()}
    before = {k: v.clone() for k, v in base.items()}
    merged = merge_lora(base, adapter, alpha=12, rank=4)

    # Pure: the inputs are untouched. Idempotent: the same inputs give the same output.
    for k in base:
        torch.testing.assert_close(base[k], before[k], rtol=0, atol=0)
    again = merge_lora(base, adapter, alpha=12, rank=4)
    for k in merged:
        torch.testing.assert_close(again[k], merged[k], rtol=0, atol=0)
    changed = [k for k in merged if not torch.equal(merged[k], base[k])]
    assert len(changed) == 2 * 7  # every projection of both blocks

    plain = LlamaForCausalLM(peft_model.get_base_model().config).eval()
    missing, unexpected = plain.load_state_dict(merged, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    plain.tie_weights()
    with torch.no_grad():
        got = plain(input_ids=ids).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

    reference = peft_model.merge_and_unload().state_dict()
    for k, v in merged.items():
        torch.testing.assert_close(v, reference[k], rtol=1e-5, atol=1e-6)
