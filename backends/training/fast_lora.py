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

The layer's backward is written out (:class:`_LoraLinear`): under autocast, autograd's
version casts ``x`` to bf16 twice and keeps both copies for the backward pass, then adds
two full-width gradients of ``x``. Written out it keeps one copy and accumulates in
place. In an A/B of the same micro-batches (alternating, 10 rounds) the speed was the
same within the VM's noise (median 277 against 279 tokens/s in bf16, 182 against 177 in
fp32); what it saves is one activation-sized copy per LoRA layer of a bf16 run.
"""

from __future__ import annotations

import types
from typing import Any

import torch
import torch.nn.functional as F

from backends.training.precision import low_weight


class _LoraLinear(torch.autograd.Function):
    """``x @ W^T + bias + scaling * (x @ A^T) @ B^T`` with a hand-written backward.

    Autograd's version of the same sum casts ``x`` once per matmul (twice forward, twice
    backward), keeps both casts, routes the scaling through its own node, adds the two
    gradients of ``x`` in a full-width tensor and records the in-place ``addmm_`` as a
    copy of slices. Here ``x`` is cast once and saved once, the scaling lands on the
    rank-wide tensors, and the gradient of ``x`` is one matmul with the LoRA term
    accumulated into it in place. The matmuls are the same eight.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                a: torch.Tensor, b: torch.Tensor, scaling: float,
                dtype: torch.dtype) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            xc = x.reshape(-1, x.shape[-1]).to(dtype)
            ac, bc = a.to(dtype), b.to(dtype)
            h = xc @ ac.t()
            h.mul_(scaling)
            w = weight.to(dtype)
            out = xc @ w.t() if bias is None else torch.addmm(bias.to(dtype), xc, w.t())
            out.addmm_(h, bc.t())
        ctx.save_for_backward(xc, w, ac, bc, h)
        ctx.scaling, ctx.x_meta, ctx.dtypes = scaling, (x.shape, x.dtype), (a.dtype, b.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        xc, w, ac, bc, h = ctx.saved_tensors
        shape, x_dtype = ctx.x_meta
        need_x, _, _, need_a, need_b = ctx.needs_input_grad[:5]
        grad_x = grad_a = grad_b = None
        with torch.autocast(grad.device.type, enabled=False):
            g = grad.reshape(-1, grad.shape[-1]).to(xc.dtype)
            if need_b:
                grad_b = (g.t() @ h).to(ctx.dtypes[1])
            gh = g @ bc
            gh.mul_(ctx.scaling)
            if need_a:
                grad_a = (gh.t() @ xc).to(ctx.dtypes[0])
            if need_x:
                grad_x = g @ w
                grad_x.addmm_(gh, ac)
                grad_x = grad_x.to(x_dtype).view(shape)
        return grad_x, None, None, grad_a, grad_b, None, None


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
    weight, bias = low_weight(self, x)
    dropout = self.lora_dropout[name]
    if isinstance(dropout, torch.nn.Identity) or not dropout.training:
        device = x.device.type
        dtype = (torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device)
                 else x.dtype)
        return _LoraLinear.apply(x, weight, bias, a, b, self.scaling[name], dtype)
    h = F.linear(dropout(x), a) * self.scaling[name]
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
            layer: Any = module  # patched at run time, beyond what torch's types know
            layer._hearth_peft_forward = layer.forward
            layer.forward = types.MethodType(_fused_forward, layer)
            n += 1
    return n
