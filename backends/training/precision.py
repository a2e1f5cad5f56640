"""How a bf16 run computes: the frozen weights cast once, attention in fp32 on a CPU.

Under plain autocast every matmul casts its fp32 weight to bf16 on each call: for a
135M model that is 1,150 casts and a tenth of a CPU training step (torch.profiler), and
autograd keeps each cast copy until the backward pass. Here a bf16 copy of each frozen
weight is made once when a bf16 run starts and dropped when training ends; the fp32
weights stay as they were, so the merge and the export still read the exact dequantized
base. LoRA's own weights stay fp32 (AdamW updates them) and are cast per call: they are
rank-wide, a few percent of the model.

PyTorch's CPU flash attention is slower in bf16 than in fp32 at the lengths of chat
records (forward + backward at 4 x 9 heads x 110 tokens: 11.2 ms against 4.9 ms on the
Sapphire Rapids VM), so on a CPU the attention of a bf16 run upcasts q, k and v (small:
heads x tokens x 64) and casts the result back. On a GPU bf16 attention is the fast one
and stays as it is.
"""

from __future__ import annotations

from typing import Any

import torch

ATTENTION = "hearth_cpu_sdpa"


def _fp32_sdpa(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor,
               value: torch.Tensor, attention_mask: torch.Tensor | None,
               **kwargs: Any) -> tuple[torch.Tensor, None]:
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.device.type != "cpu":
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    # Rotary embedding leaves q and k in fp32 (its tables are fp32) and v in bf16;
    # autocast would cast all three down for SDPA. Compute it in fp32 instead.
    low = value.dtype
    with torch.autocast("cpu", enabled=False):
        out, weights = sdpa_attention_forward(
            module, query.float(), key.float(), value.float(), attention_mask, **kwargs)
    return out.to(low), weights


def use_fp32_attention(model: Any) -> bool:
    """Route ``model``'s attention through :func:`_fp32_sdpa` when it uses SDPA."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if base.config._attn_implementation not in ("sdpa", ATTENTION):
        return False
    AttentionInterface.register(ATTENTION, _fp32_sdpa)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    base.set_attn_implementation(ATTENTION)
    return True


def _frozen_linears(model: torch.nn.Module) -> list[Any]:
    """Every module whose forward reads ``_hearth_low`` (see :mod:`fast_lora`): PEFT's
    LoRA layers, with attributes set at run time that torch's types do not know."""
    return [m for m in model.modules() if hasattr(m, "_hearth_peft_forward")]


def cast_frozen(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Keep a ``dtype`` copy of each fused LoRA layer's frozen weight (and bias)."""
    n = 0
    with torch.no_grad():
        for module in _frozen_linears(model):
            base = module.base_layer
            module._hearth_low = base.weight.detach().to(dtype)
            module._hearth_low_bias = (None if base.bias is None
                                       else base.bias.detach().to(dtype))
            n += 1
    return n


def drop_frozen_casts(model: torch.nn.Module) -> None:
    for module in _frozen_linears(model):
        module._hearth_low = None
        module._hearth_low_bias = None


def low_weight(module: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The weight and bias a fused layer multiplies by: the cast copy when autocast runs
    in its dtype, else the fp32 weights (evaluation in fp32, the merge, the export)."""
    base = module.base_layer
    low = getattr(module, "_hearth_low", None)
    device = x.device.type
    if (low is not None and torch.is_autocast_enabled(device)
            and torch.get_autocast_dtype(device) == low.dtype):
        return low, module._hearth_low_bias
    return base.weight, base.bias
