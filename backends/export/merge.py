"""Folding a LoRA adapter into the base weights: a pure, idempotent function.

``merged = W + (alpha / r) * B @ A`` for every adapted linear layer. The function reads
its inputs and returns a new mapping; it never mutates the base weights, so calling it
twice with the same inputs gives the same result, and the base model stays usable
(e.g. for the fidelity check that compares base+adapter with the merged export).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

_LORA_A, _LORA_B = ".lora_A.weight", ".lora_B.weight"


def adapter_pairs(adapter: Mapping[str, torch.Tensor]) -> dict[str, tuple[torch.Tensor,
                                                                          torch.Tensor]]:
    """Map each adapted base weight name to its (A, B) from a PEFT adapter state dict.

    PEFT saves ``base_model.model.<module>.lora_A.weight``; the base weight is
    ``<module>.weight``.
    """
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for key, a in adapter.items():
        if not key.endswith(_LORA_A):
            continue
        module = key[:-len(_LORA_A)].removeprefix("base_model.model.")
        b_key = key[:-len(_LORA_A)] + _LORA_B
        if b_key not in adapter:
            raise ValueError(f"the adapter has {key} but not {b_key}")
        pairs[f"{module}.weight"] = (a, adapter[b_key])
    if not pairs:
        raise ValueError("the adapter holds no LoRA weights")
    return pairs


def merge_lora(base: Mapping[str, torch.Tensor], adapter: Mapping[str, torch.Tensor],
               alpha: float, rank: int) -> dict[str, torch.Tensor]:
    """Base weights with the adapter folded in (computed in float32, base dtype kept)."""
    scale = alpha / rank
    pairs = adapter_pairs(adapter)
    missing = sorted(set(pairs) - set(base))
    if missing:
        raise ValueError(f"the adapter changes layers the base model lacks: {missing[:3]}")
    merged = dict(base)
    for name, (a, b) in pairs.items():
        weight = base[name]
        if (b.shape[0], a.shape[1]) != tuple(weight.shape):
            raise ValueError(f"{name}: adapter shape {tuple(b.shape)}@{tuple(a.shape)} does "
                             f"not fit the weight {tuple(weight.shape)}")
        delta = (b.float() @ a.float()) * scale
        merged[name] = (weight.float() + delta.to(weight.device)).to(weight.dtype)
    return merged
