"""Tiny GGUF files for tests, written with the ``gguf`` package's own writer.

They are structurally real GGUF (header, metadata, aligned tensor data) but far too
small to be a useful model; tests that need llama.cpp to run use the starter model.
``pad_to`` grows the file with one extra tensor when a test needs enough bytes to
interrupt a transfer midway; ``seed`` makes files of the same shape differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gguf import GGUFWriter

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_tiny_gguf(path: Path, name: str = "tiny", n_layers: int = 2, n_embd: int = 16,
                    context_length: int = 256, chat_template: str | None = None, *,
                    n_head: int = 2, n_head_kv: int = 1, pad_to: int = 0,
                    seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), "llama")
    writer.add_name(name)
    writer.add_block_count(n_layers)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_file_type(0)  # ALL_F32
    if chat_template:
        writer.add_chat_template(chat_template)
    rng = np.random.default_rng(seed)
    writer.add_tensor("token_embd.weight", rng.standard_normal((32, n_embd), np.float32))
    for layer in range(n_layers):
        writer.add_tensor(f"blk.{layer}.attn_q.weight",
                          rng.standard_normal((n_embd, n_embd), np.float32))
    if pad_to:
        writer.add_tensor("padding.weight",
                          rng.standard_normal((max(1, pad_to // 4),), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
