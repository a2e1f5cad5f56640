"""A LoRA forward without the full-width temporaries of PEFT's.

PEFT computes ``base(x) + lora_B(lora_A(x)) * scaling``: the scaling multiplies an
``tokens x out_features`` tensor and the sum allocates another, and the backward pass
repeats the multiply. On a CPU those elementwise passes over memory cost as much as a
third of the matmul time of a small model (measured with torch.profiler on SmolLM2-135M:
``aten::mul`` + ``aten::add`` 29 % of a training step against 37 % for ``aten::mm``).
Here the scaling is applied to the rank-wide ``x @ A^T`` (16 columns, not 576-1536) and
``B`` is accumulated into the base layer's output in place by one ``addmm_``, which the
backward pass handles without keeping any extra tensor (the base matmul's backward does
not need its output).

The patch is per module instance, keeps PEFT's parameters (names, shapes, what
``save_pretrained`` and the merge read) and falls back to PEFT's own forward for
anything but one plain, unmerged, enabled adapter. In a bf16 run the frozen weight is
the copy :mod:`backends.training.precision` cast once, not a cast per call.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

from backends.training.precision import low_weight


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    active = self.active_adapters
    base = self.base_layer
    if (args or kwargs or self.disable_adapters or self.merged or len(active) != 1
            or active[0] not in self.lora_A or active[0] in self.lora_variant
            or not isinstance(base, torch.nn.Linear)):
        return self._hearth_peft_forward(x, *args, **kwargs)
    name = active[0]
    a = self.lora_A[name].weight
    b = self.lora_B[name].weight
    h = F.linear(self.lora_dropout[name](x), a) * self.scaling[name]
    weight, bias = low_weight(self, x)
    out = F.linear(x, weight, bias)
    flat = out.view(-1, out.shape[-1])
    flat.addmm_(h.reshape(-1, h.shape[-1]).to(out.dtype), b.t().to(out.dtype))
    return out


def fuse_lora(model: torch.nn.Module) -> int:
    """Give every PEFT LoRA ``Linear`` of ``model`` the fused forward; returns how many."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    n = 0
    for module in model.modules():
        if type(module) is LoraLinear and not hasattr(module, "_hearth_peft_forward"):
            module._hearth_peft_forward = module.forward
            module.forward = types.MethodType(_fused_forward, module)
            n += 1
    return n
