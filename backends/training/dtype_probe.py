"""Which dtype a training run computes in, chosen by measuring this machine.

On one CPU of this project's machines PyTorch's bf16 matmuls run 5-6x faster than fp32
(AMX); on another, of the same kind, about 400x slower (no bf16 hardware). Nothing
about the CPU's name says which, so at the start of a run the worker measures:

1. a matmul at the model's own shapes both ways (a fraction of a second): where bf16
   is not clearly faster, or hopelessly slower, fp32 it is;
2. where it is faster, a real training step (forward and backward of a short piece of
   the run's own data) both ways: a matmul's ratio over-promises, because a step also
   holds elementwise work, attention and casts that bf16 speeds up less or not at all
   (measured: matmuls 3x, a step under plain autocast 1.0x on the same CPU);
3. and that the model's validation loss in bf16 stays within :data:`MAX_LOSS_DRIFT` of
   fp32's.

CUDA uses bf16 where the GPU supports it. How a bf16 run computes (weights cast once,
attention in fp32 on a CPU) is :mod:`backends.training.precision`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

from app.finetune.runs.reports import DtypeChoice

MAX_LOSS_DRIFT = 0.02      # bf16 validation loss within 2 % of fp32's
MIN_SPEEDUP = 1.2          # below this, fp32's exactness is worth more
PROBE_SECONDS = 0.15       # per dtype
# Below this weight size (hidden x intermediate) a matmul is all overhead: timing it
# says nothing, and test models this small must train the same way every time.
TINY_MATMUL = 256 * 512


def autocast_dtype(choice: DtypeChoice) -> torch.dtype | None:
    """What ``torch.autocast`` computes in for ``choice`` (None: plain fp32)."""
    return torch.bfloat16 if choice.dtype == "bfloat16" else None


def _gflops(fn: Callable[[], Any], flops: float) -> float:
    fn()  # warm-up: kernel selection, packing
    runs, started = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - started
        if elapsed >= PROBE_SECONDS or runs >= 200:
            return flops * runs / elapsed / 1e9


def matmul_speeds(hidden: int, intermediate: int, tokens: int = 256) -> tuple[float, float]:
    """GFLOP/s of ``[tokens, hidden] @ [hidden, intermediate]`` in fp32 and in bf16 as
    training runs it: the weight cast once (:mod:`backends.training.precision`), the fp32
    activations cast by autocast on each call."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, hidden, generator=g)
    w = torch.randn(intermediate, hidden, generator=g)
    low = w.to(torch.bfloat16)
    flops = 2.0 * tokens * hidden * intermediate
    fp32 = _gflops(lambda: torch.nn.functional.linear(x, w), flops)

    def bf16() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return torch.nn.functional.linear(x, low)

    # A machine without bf16 hardware can be ~400x slower: one call tells already.
    started = time.perf_counter()
    bf16()
    if time.perf_counter() - started > 20 * flops / (fp32 * 1e9) + 0.05:
        return fp32, flops / (time.perf_counter() - started) / 1e9
    return fp32, _gflops(bf16, flops)


def choose_dtype(device: torch.device, hidden: int, intermediate: int,
                 val_loss: Callable[[torch.dtype | None], float] | None = None,
                 forced: str | None = None,
                 step_speed: Callable[[torch.dtype | None], float] | None = None
                 ) -> DtypeChoice:
    """``val_loss(autocast_dtype)`` evaluates the model on a few validation records;
    ``step_speed(autocast_dtype)`` times a training step, in tokens per second."""
    if forced in ("float32", "bfloat16"):
        return DtypeChoice(forced, "set for this run")
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return DtypeChoice("bfloat16", "the GPU supports bf16")
        return DtypeChoice("float32", "the GPU has no bf16")
    if device.type != "cpu":
        return DtypeChoice("float32", f"{device.type}: fp32")
    if hidden * intermediate < TINY_MATMUL:
        return DtypeChoice("float32", "the model is too small for bf16 to pay off")
    fp32, bf16 = matmul_speeds(hidden, intermediate)
    choice = DtypeChoice("float32", "", fp32_gflops=round(fp32, 1), bf16_gflops=round(bf16, 1))
    speedup = bf16 / fp32
    if speedup < MIN_SPEEDUP:
        choice.reason = f"bf16 matmuls are {speedup:.2f}x fp32's speed here"
        return choice
    if step_speed is not None:
        # Alternate, best of two each: a step that a neighbour's burst slowed once
        # must not decide the run.
        fast = {None: 0.0, torch.bfloat16: 0.0}
        for _ in range(2):
            for dtype in fast:
                fast[dtype] = max(fast[dtype], step_speed(dtype))
        choice.fp32_step_tokens_per_s = round(fast[None], 1)
        choice.bf16_step_tokens_per_s = round(fast[torch.bfloat16], 1)
        speedup = fast[torch.bfloat16] / max(1e-9, fast[None])
        if speedup < MIN_SPEEDUP:
            choice.reason = (f"a training step in bf16 runs at {speedup:.2f}x fp32's "
                             f"speed here (matmuls alone: {bf16 / fp32:.1f}x)")
            return choice
    what = "a training step" if step_speed is not None else "matmuls"
    if val_loss is not None:
        ref, low = val_loss(None), val_loss(torch.bfloat16)
        choice.fp32_val_loss, choice.bf16_val_loss = round(ref, 5), round(low, 5)
        drift = abs(low - ref) / max(1e-9, abs(ref))
        if drift > MAX_LOSS_DRIFT:
            choice.reason = (f"bf16 is {speedup:.1f}x faster but moves the validation loss "
                             f"by {drift:.1%} (limit {MAX_LOSS_DRIFT:.0%})")
            return choice
    choice.dtype = "bfloat16"
    choice.reason = f"bf16 runs {what} at {speedup:.1f}x fp32's speed here"
    return choice
