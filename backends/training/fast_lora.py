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

Sibling layers that read the same tensor (q, k and v; gate and up) run their rank-wide
``A`` matmuls as one: a ``tokens x 16`` product uses a matrix unit poorly (measured
34-150 GFLOP/s against 700+ for the base weights in bf16), ``tokens x 48`` less so, and
there are fewer calls. The first sibling to run computes the stacked product and the
others take their slice of it while the input is the very same tensor; without dropout
only, since each layer's dropout draws its own mask.

The patch is per module instance, keeps PEFT's parameters (names, shapes, what
``save_pretrained`` and the merge read) and falls back to PEFT's own forward for
anything but one plain, unmerged, enabled adapter. In a bf16 run the frozen weight is
the copy :mod:`backends.training.precision` cast once, not a cast per call.
"""

from __future__ import annotations

import types
import weakref
from typing import Any

import torch
import torch.nn.functional as F

from backends.training.precision import low_weight

# Sibling projections of one block that read the same input (Llama, Qwen, Mistral, Gemma
# names); anything else keeps one A matmul per layer.
SHARED_INPUT = (("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"))


class _SharedInput:
    """The stacked ``x @ A^T`` of sibling layers, kept while ``x`` is the same tensor."""

    def __init__(self, members: list[Any], name: str) -> None:
        self.members = members
        self.name = name
        self.offsets: dict[int, int] = {}
        start = 0
        for m in members:
            self.offsets[id(m)] = start
            start += m.lora_A[name].weight.shape[0]
        self.x: weakref.ref[torch.Tensor] | None = None
        self.h: torch.Tensor | None = None

    def hidden(self, module: Any, x: torch.Tensor) -> torch.Tensor:
        if self.x is None or self.x() is not x or self.h is None:
            weight = torch.cat([m.lora_A[self.name].weight for m in self.members])
            self.x, self.h = weakref.ref(x), F.linear(x, weight)
        start = self.offsets[id(module)]
        return self.h[..., start:start + module.lora_A[self.name].weight.shape[0]]


def _lora_hidden(self: Any, name: str, x: torch.Tensor) -> torch.Tensor:
    group = getattr(self, "_hearth_shared", None)
    if group is not None and group.name == name and isinstance(self.lora_dropout[name],
                                                                torch.nn.Identity):
        return group.hidden(self, x)
    return F.linear(self.lora_dropout[name](x), self.lora_A[name].weight)


def _fused_forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    active = self.active_adapters
    base = self.base_layer
    if (args or kwargs or self.disable_adapters or self.merged or len(active) != 1
            or active[0] not in self.lora_A or active[0] in self.lora_variant
            or not isinstance(base, torch.nn.Linear)):
        return self._hearth_peft_forward(x, *args, **kwargs)
    name = active[0]
    b = self.lora_B[name].weight
    h = _lora_hidden(self, name, x) * self.scaling[name]
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
    _share_inputs(model)
    return n


def _share_inputs(model: torch.nn.Module) -> None:
    """Group each block's sibling layers of :data:`SHARED_INPUT` (one adapter, same
    input width, no dropout)."""
    for parent in model.modules():
        for names in SHARED_INPUT:
            members = [getattr(parent, n, None) for n in names]
            if not all(hasattr(m, "_hearth_peft_forward") for m in members):
                continue
            adapters = {tuple(m.lora_A) for m in members}
            if len(adapters) != 1 or len(next(iter(adapters))) != 1:
                continue
            name = next(iter(adapters))[0]
            if (len({m.in_features for m in members}) != 1
                    or not all(isinstance(m.lora_dropout[name], torch.nn.Identity)
                               for m in members)):
                continue
            group = _SharedInput(members, name)
            for m in members:
                m._hearth_shared = group
