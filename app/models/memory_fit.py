"""Will it fit: the memory a model needs at a context length, against what is free.

What "memory needed" means here
-------------------------------
The worker memory-maps the GGUF file and llama.cpp allocates three more things:

* **weights** — the file itself. It is mapped, not copied, so the pages count towards
  the worker's resident set only once they are read; one generation reads every
  weight, so in use the whole file is resident (as page cache shared with the worker).
* **KV cache** — ``n_layers × n_ctx × n_head_kv × (head_dim_k + head_dim_v)`` elements
  of the cache type (f16: 2 bytes). llama.cpp zero-fills it at load, so it is resident
  at once, all of it, whatever the conversation's length.
* **compute buffer** — llama.cpp reserves it for the worst case, a full batch of 512
  prompt tokens: its size is the largest stage of the graph, either the output logits
  (``n_vocab`` per token) or, without flash attention, the attention scores and mask
  (``n_ctx × (n_head + 1)`` per token), which win at long contexts. A short exchange
  touches about a quarter of the logits stage; a long prompt near a full context
  touches the whole buffer.

plus a fixed **runtime** (the Python interpreter, llama.cpp's code and allocator).

So there are two honest numbers. :attr:`MemoryEstimate.typical` is what the worker
holds resident in an ordinary chat, and is what the test checks against the measured
RSS of the real worker (within 25 %). :attr:`MemoryEstimate.peak` adds the whole
compute reservation: what a long prompt near a full context can reach. The verdict is
green when the peak fits with room to spare, yellow when only the typical use fits
(long prompts or other programs may push it into swap), red when not even that fits.

Calibration (SmolLM2-135M Q4_1, 94 MiB file, CPU, llama-cpp-python 0.3.x, RSS of
the real worker after one short reply; llama.cpp logs the compute buffer it reserves).
``tests/test_fit.py`` repeats the 2048 and 8192 rows and checks the compute buffer
against llama.cpp's log:

=============  ========  =================  ===========  ===========  ============
 n_ctx         KV cache  compute (logged)   compute est  RSS          typical est
=============  ========  =================  ===========  ===========  ============
 2048          45 MiB    99.4 MiB           100.5 MiB    218 MiB      219 MiB
 4096          90 MiB    99.4 MiB           100.5 MiB    263 MiB      264 MiB
 8192          180 MiB   166.4 MiB          164.5 MiB    354 MiB      354 MiB
 8192 + FA     180 MiB   98.3 MiB           100.5 MiB    353 MiB      354 MiB
 8192 q8_0+FA  96 MiB    --                 100.5 MiB    261 MiB      269 MiB
=============  ========  =================  ===========  ===========  ============

(The q8_0 row: ``tests/test_kv_cache_type.py``, which also checks that the memory q8_0
saves against f16 is what the estimate says: 85 MiB measured, 84 MiB estimated. The
worker turns flash attention on for a quantized cache, and :func:`verdict_for` counts
it so.)

The runtime constant and the typical share come from these measurements; the stage
sizes follow llama.cpp's graph, so they carry over to other models better than the
constants do, which is why the green verdict keeps a 10 % margin.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Literal

import psutil

from app.machine.memory import free_memory_bytes, total_memory_bytes
from app.models.model_info import ModelInfo
from app.units import MiB, format_bytes

# Bytes per element of the KV cache for llama.cpp's cache types.
CACHE_BYTES: dict[str, float] = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "q8_0": 34 / 32,
                                 "q5_1": 24 / 32, "q5_0": 22 / 32, "q4_1": 20 / 32,
                                 "q4_0": 18 / 32}
RUNTIME_BYTES = 55 * MiB
"""Interpreter + llama.cpp libraries + allocator: the worker's RSS before a model loads."""
N_UBATCH = 512
"""The worker's micro-batch (llama.cpp default); the compute buffer scales with it."""
_ACTIVATION_ROWS = 4
"""Activations alive beside the biggest tensor: about this many rows of n_embd floats
per batch token."""
_TYPICAL_LOGITS_SHARE = 0.25
"""Share of the logits stage a short exchange touches (measured: 24-25 MiB of 99 MiB
at every context length and with flash attention)."""
GREEN_SHARE = 0.90
"""The peak must fit in this share of the free memory for a green verdict."""

Level = Literal["green", "yellow", "red"]


@dataclass(frozen=True)
class MemoryEstimate:
    n_ctx: int
    weights: int
    kv_cache: int
    compute_reserved: int
    compute_typical: int
    runtime: int
    exact: bool
    """False when the header lacked the shape (e.g. a hub file not yet downloaded): then
    the KV cache and compute buffer are left out and the numbers are a lower bound."""

    @property
    def typical(self) -> int:
        """Resident memory in an ordinary chat: weights + KV + runtime + part of compute."""
        return self.weights + self.kv_cache + self.runtime + self.compute_typical

    @property
    def peak(self) -> int:
        """With the whole compute buffer in use (a long prompt near a full context)."""
        return self.weights + self.kv_cache + self.runtime + self.compute_reserved

    def breakdown(self) -> str:
        lower = "" if self.exact else "at least "
        b = format_bytes
        return (f"{lower}{b(self.typical)} (weights {b(self.weights)} + KV cache "
                f"{b(self.kv_cache)} at {self.n_ctx:,} tokens + runtime "
                f"{b(self.runtime + self.compute_typical)}); up to {b(self.peak)} "
                "with a long prompt")


def estimate_memory(shape: ModelInfo, n_ctx: int,
                    cache_type: str = "f16", flash_attn: bool = False,
                    n_ubatch: int = N_UBATCH) -> MemoryEstimate:
    """Estimate the worker's memory for the model ``shape`` describes at ``n_ctx``."""
    if n_ctx < 1:
        raise ValueError("the context length must be positive")
    per_elem = CACHE_BYTES.get(cache_type.lower())
    if per_elem is None:
        raise ValueError(f"unknown KV cache type {cache_type!r} "
                         f"(known: {', '.join(CACHE_BYTES)})")
    kv = compute = typical = 0
    if shape.kv_known:
        assert shape.n_layers and shape.kv_heads and shape.head_dim_k and shape.head_dim_v
        kv = int(shape.n_layers * n_ctx * shape.kv_heads
                 * (shape.head_dim_k + shape.head_dim_v) * per_elem)
        # llama.cpp's graph allocator reuses memory between stages, so the buffer is
        # the largest stage: the output logits, or the attention scores plus their
        # mask (f32, per head; flash attention never materialises them).
        activations = n_ubatch * (shape.n_embd or 4096) * 4 * _ACTIVATION_ROWS
        logits = n_ubatch * (shape.n_vocab or 32000) * 4 + activations
        scores = (0 if flash_attn else
                  n_ubatch * n_ctx * ((shape.n_head or 1) + 1) * 4 + activations)
        compute = max(logits, scores)
        typical = int(logits * _TYPICAL_LOGITS_SHARE)
    return MemoryEstimate(n_ctx=n_ctx, weights=shape.file_size or 0, kv_cache=kv,
                          compute_reserved=compute, compute_typical=typical,
                          runtime=RUNTIME_BYTES, exact=shape.kv_known)


# ----------------------------------------------------------------- the machine


@dataclass(frozen=True)
class GpuMemory:
    name: str
    total: int
    free: int


@dataclass(frozen=True)
class SystemMemory:
    ram_total: int
    ram_available: int
    gpus: tuple[GpuMemory, ...] = field(default_factory=tuple)


def system_memory(query_gpus: bool = True, worker_pid: int | None = None) -> SystemMemory:
    """Free RAM (:func:`app.machine.memory.free_memory_bytes`) and NVIDIA VRAM.

    ``worker_pid`` is the inference worker: loading a model replaces the one it holds,
    so the memory that model uses counts as free for the next one. Only its private
    (anonymous) memory above the runtime is added; its memory-mapped weights are page
    cache, which ``available`` already counts.
    """
    total, available = total_memory_bytes(), free_memory_bytes()
    if worker_pid is not None:
        try:
            info = psutil.Process(worker_pid).memory_info()
            private = info.rss - getattr(info, "shared", 0)
            available += max(0, private - RUNTIME_BYTES)
        except psutil.Error:
            pass
    return SystemMemory(total, min(available, total),
                        nvidia_gpus() if query_gpus else ())


def nvidia_gpus(timeout: float = 3.0) -> tuple[GpuMemory, ...]:
    """NVIDIA GPUs from ``nvidia-smi``; none when it is missing or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return ()
    try:
        out = subprocess.run([exe, "--query-gpu=name,memory.total,memory.free",
                              "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return parse_nvidia_smi(out)


def parse_nvidia_smi(text: str) -> tuple[GpuMemory, ...]:
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 3:
            continue
        try:
            gpus.append(GpuMemory(parts[0], int(float(parts[1])) * MiB,
                                  int(float(parts[2])) * MiB))
        except ValueError:
            continue
    return tuple(gpus)


# ------------------------------------------------------------------- verdict


@dataclass(frozen=True)
class FitVerdict:
    level: Level
    summary: str
    """A few words for a table cell: "fits", "tight", "too big"."""
    detail: str
    """The numbers behind the verdict, for a tooltip or the CLI."""
    estimate: MemoryEstimate
    system: SystemMemory


def check_fit(estimate: MemoryEstimate, system: SystemMemory, n_gpu_layers: int = 0,
              n_layers: int | None = None) -> FitVerdict:
    """Green / yellow / red for running ``estimate`` on ``system``."""
    gpu = max(system.gpus, key=lambda g: g.free) if system.gpus else None
    if n_gpu_layers and gpu is not None:
        return _check_gpu(estimate, system, gpu, n_gpu_layers, n_layers)
    free = system.ram_available
    need = estimate.breakdown()
    where = f"{format_bytes(free)} of RAM free"
    if estimate.peak <= free * GREEN_SHARE:
        return FitVerdict("green", "fits", f"Fits: needs {need}; {where}.", estimate, system)
    if estimate.typical <= free:
        return FitVerdict("yellow", "tight",
                          f"Tight: needs {need}; {where}. Long prompts or other programs "
                          "may push it into swap; a shorter context helps.", estimate, system)
    return FitVerdict("red", "too big",
                      f"Too big: needs {need}; only {where}. Choose a smaller "
                      "quantization or a shorter context, or close other programs.",
                      estimate, system)


def _check_gpu(estimate: MemoryEstimate, system: SystemMemory, gpu: GpuMemory,
               n_gpu_layers: int, n_layers: int | None) -> FitVerdict:
    share = 1.0 if n_gpu_layers < 0 or not n_layers else min(1.0, n_gpu_layers / n_layers)
    on_gpu = int((estimate.weights + estimate.kv_cache) * share) + estimate.compute_reserved
    in_ram = estimate.peak - on_gpu
    b = format_bytes
    text = (f"{b(on_gpu)} on {gpu.name} ({b(gpu.free)} free) and {b(in_ram)} in "
            f"RAM ({b(system.ram_available)} free); model needs {estimate.breakdown()}")
    if on_gpu <= gpu.free * GREEN_SHARE and in_ram <= system.ram_available * GREEN_SHARE:
        return FitVerdict("green", "fits", f"Fits: {text}.", estimate, system)
    if on_gpu <= gpu.free and in_ram <= system.ram_available:
        return FitVerdict("yellow", "tight", f"Tight: {text}. Offload fewer layers if "
                          "loading fails.", estimate, system)
    return FitVerdict("red", "too big", f"Too big for the GPU: {text}. Offload fewer "
                      "layers, or choose a smaller quantization or context.", estimate, system)


def verdict_for(info: ModelInfo, n_ctx: int, n_gpu_layers: int = 0,
                flash_attn: bool = False, system: SystemMemory | None = None,
                cache_type: str = "f16") -> FitVerdict:
    """One call for "will this library model fit with these load settings?".

    The chat tab can call it before loading (``system`` is measured when not given;
    that runs nvidia-smi, so call it off the GUI thread or pass a cached snapshot).
    """
    # A quantized cache runs with flash attention (the worker turns it on).
    estimate = estimate_memory(info, n_ctx, cache_type,
                               flash_attn=flash_attn or cache_type != "f16")
    return check_fit(estimate, system if system is not None else system_memory(),
                     n_gpu_layers, info.n_layers)
