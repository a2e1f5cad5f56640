"""What Hearth read from a model's GGUF header when the model was added: the library's
``info`` column, the Models tab's columns, the memory estimate's shape.

Stored as JSON in ``hearth.db``, and so read back tolerantly (:meth:`ModelInfo.stored`):
records written before the GGUF reader refused non-numbers could hold ``+inf`` or a
string where a count belongs, which broke the Models tab at every start; such a value
reads as unknown, and a field a later Hearth adds takes its default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from app.codec import to_dict


@dataclass(frozen=True)
class ModelInfo:
    name: str | None = None
    """The model's own name (``general.name``), not the library's."""
    architecture: str = "unknown"
    parameters: int | None = None
    quantization: str = "?"
    file_size: int | None = None
    context_length: int | None = None
    has_chat_template: bool = False
    n_layers: int | None = None
    n_embd: int | None = None
    n_head: int | None = None
    n_head_kv: int | None = None
    key_length: int | None = None
    """Head sizes where they differ from n_embd / n_head (Gemma, Qwen3): the KV cache."""
    value_length: int | None = None
    n_vocab: int | None = None
    """The vocabulary: the logits buffer."""

    def to_json(self) -> dict[str, Any]:
        return to_dict(self)

    # What the memory estimate (app.models.memory_fit) sizes the KV cache by.

    @property
    def kv_heads(self) -> int | None:
        """Key/value heads: the query heads where the header names no separate count."""
        return self.n_head_kv or self.n_head or None

    @property
    def head_dim_k(self) -> int | None:
        if self.key_length:
            return self.key_length
        if self.n_embd and self.n_head:
            return self.n_embd // self.n_head
        return None

    @property
    def head_dim_v(self) -> int | None:
        return self.value_length or self.head_dim_k

    @property
    def kv_known(self) -> bool:
        """True when the header gave enough to size the KV cache."""
        return bool(self.n_layers and self.kv_heads and self.head_dim_k)

    @classmethod
    def stored(cls, data: Any) -> ModelInfo:
        """The info as a record holds it; a value of the wrong kind reads as unknown."""
        if not isinstance(data, dict):
            return cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            value = data.get(f.name)
            if f.type == "int | None":
                values[f.name] = _count(value)
            elif f.type == "bool":
                values[f.name] = value if isinstance(value, bool) else f.default
            elif isinstance(value, str):
                values[f.name] = value
        return cls(**values)


def _count(value: Any) -> int | None:
    """A whole number of at least 0, or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value == int(value):
        return int(value)
    return None
