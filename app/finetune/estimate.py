"""How long a fine-tuning run will take and how much memory it will need: the formula.

Qt-free and torch-free. The Fine-tune tab prices each preset with it before Start
(:func:`app.finetune.plan.plan_run`), Teach its first run (:mod:`app.teach.estimate`),
and the training worker its first figure once the data is tokenized; the worker then
replaces the guess with what it measures. Its inputs are typed: what the run pushes
through the model (:class:`Workload`), where it computes (:class:`Compute`) and, for the
whole run's figure, the fixed costs around the loop (:class:`Overheads`). The CPU rates
and costs below are measured (BENCHMARKS.md, "Fine-tuning" and "Estimates").
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from app.machine.profile import Machine

# Effective speed of Hearth's LoRA loop on a CPU, per physical core, counting the
# useful FLOPs of LoRA training (4 per frozen weight per real token: forward, and
# backward to the activations; the output head only on target tokens). It grows with
# the model's width: a narrow model's small matmuls and many small ops stay far from
# the core's peak. (hidden size, FLOP/s per core) per compute dtype, measured on a
# 2-core Sapphire Rapids VM (BENCHMARKS.md, "Fine-tuning"); interpolated log-log
# between the points and held flat beyond them. The worker replaces this with the
# dtype it measured, then with a measurement after its first steps, and scales it by
# how this machine's previous run compared with it.
CPU_RATE_BY_WIDTH = {"float32": ((576, 3.9e10), (2048, 1.3e11)),
                     "bfloat16": ((576, 4.8e10), (2048, 1.5e11))}
GPU_FLOPS = 4.0e13
# Fixed costs of a whole run around the training loop, from the same measurements:
# starting the worker and importing torch, then reading the weights (with the dtype
# probe's timed steps); the first time a GGUF is trained on, transformers' conversion
# of it (its GGUF reader walks the vocabulary field by field and rebuilds its
# tensor-name map per tensor: 31-41 s measured at 0.4-1.5 B, cached afterwards by
# backends.training.base_model); and after training the merge, GGUF export,
# quantization and llama.cpp check, per quantization: a k-quant costs far more than
# q8_0 (measured: q4_k_m 200 s per billion parameters at 1.07 B; q8_0 101-160 at
# 0.14-1.51 B; BENCHMARKS.md, "Estimates").
STARTUP_S = 8.0
LOAD_S_PER_GPARAM = 40.0
CONVERT_S = 30.0
EXPORT_S_PER_GPARAM = {"f16": 60.0, "q8_0": 120.0, "q4_k_m": 200.0}
RUNTIME_BYTES = 600 << 20  # the Python interpreter, torch and the tokenizer


# torch.compile of the decoder layers on a CPU (backends.training.compiled): the expected
# speed-up (the low end of the measured 1.37-1.45x) and what compiling costs on 2 cores
# (the C++ compiler uses every core; 43-83 s measured cold, every step that built a
# graph counted). ``auto``, the default, compiles a run whose remaining training would
# save more than that, on models no wider than the one the gain was measured on
# (SmolLM2-135M; in a wider model the matmuls are a larger share of a step and the gain
# is unmeasured); the trainer keeps it only if its steps measure faster, so a run that
# compiles ends no later than about the eager figure plus one compile.
# ``HEARTH_TRAIN_COMPILE=off`` never compiles, ``on`` always does.
COMPILE_ENV = "HEARTH_TRAIN_COMPILE"
COMPILE_GAIN = 1.3
COMPILE_COST_S = 100.0
COMPILE_MAX_HIDDEN = 576


def compile_mode() -> str:
    """``auto`` unless the environment says ``off`` or ``on`` (what the worker will do)."""
    return os.environ.get(COMPILE_ENV, "auto")


def compile_cost_s(cores: int) -> float:
    return COMPILE_COST_S * 2 / max(1, min(cores, 16))  # measured on 2 cores


def worth_compiling(device_type: str, remaining_eager_s: float, cores: int,
                    hidden: int) -> bool:
    """Whether compiling is likely to save more training time than it costs."""
    return (device_type == "cpu" and hidden <= COMPILE_MAX_HIDDEN
            and remaining_eager_s * (1 - 1 / COMPILE_GAIN) > compile_cost_s(cores))


def training_seconds(eager_s: float, device_type: str, cores: int, mode: str,
                     hidden: int) -> float:
    """Training time as the trainer will spend it where ``mode`` compiles on a CPU:
    compiling first, then faster where the gain was measured (else at eager speed)."""
    if device_type != "cpu" or not (mode == "on" or mode == "auto" and worth_compiling(
            device_type, eager_s, cores, hidden)):
        return eager_s
    gain = COMPILE_GAIN if hidden <= COMPILE_MAX_HIDDEN else 1.0
    return compile_cost_s(cores) + eager_s / gain


def cpu_flops_per_core(hidden: int, dtype: str = "float32") -> float:
    """Training speed per core for a model this wide (see CPU_RATE_BY_WIDTH)."""
    (h0, r0), (h1, r1) = CPU_RATE_BY_WIDTH[dtype]
    h = min(max(hidden, h0), h1)
    t = math.log(h / h0) / math.log(h1 / h0)
    return math.exp(math.log(r0) + t * (math.log(r1) - math.log(r0)))


def before_training_seconds(parameters: int, converted: bool) -> float:
    """The fixed start of a run: the worker and torch, reading the weights and, unless
    the base is ``converted`` for training already, its conversion."""
    return STARTUP_S + LOAD_S_PER_GPARAM * parameters / 1e9 + (0.0 if converted
                                                               else CONVERT_S)


@dataclass(frozen=True)
class ModelShape:
    """The base model's size, as its GGUF header or its config gives it."""

    parameters: int
    hidden: int
    layers: int
    vocab: int


@dataclass(frozen=True)
class Workload:
    """What a run pushes through the model."""

    model: ModelShape
    steps_tokens: int
    """Tokens pushed through the model over the whole run, epochs included."""
    micro_batch_tokens: int
    """The tokens of one micro-batch: they set the activation memory."""
    target_fraction: float
    """Share of the tokens that carry loss (the output head runs on those only)."""
    eval_tokens: int = 0
    """Those of every validation pass together (forward only)."""


@dataclass(frozen=True)
class Compute:
    """Where and how the run computes."""

    machine: Machine
    gpu: bool = False
    dtype: str = "float32"
    compile: str = "off"
    """The trainer's compile mode (see :func:`training_seconds`)."""


@dataclass(frozen=True)
class Overheads:
    """The fixed costs around the loop, for the whole run's figure shown before Start;
    the worker, which measures what came before training, leaves them out."""

    export_quant: str | None = "q8_0"
    """The quantization the export prices; None: no GGUF export (an adapter only, or
    one applied live)."""
    converted: bool = True
    """The base was converted for training already (else its conversion is added)."""


@dataclass
class Estimate:
    """A prediction shown before training starts, compared with the outcome at the end."""

    seconds: float
    peak_memory_bytes: int
    basis: str = "formula"
    """"formula" (from sizes and the machine) or "measured" (from the first steps)."""


def estimate(work: Workload, compute: Compute,
             whole_run: Overheads | None = None) -> Estimate:
    """Time and peak memory of a run from the model's shape and the token counts; with
    ``whole_run``, the fixed costs around the loop (start, load, export) as well."""
    model = work.model
    head = model.vocab * model.hidden
    matmul = max(model.parameters - head, model.parameters // 2)  # the embedding: no matmul
    per_token = 2.0 * matmul + 2.0 * head * work.target_fraction  # one forward pass
    flops = per_token * (2 * work.steps_tokens + work.eval_tokens)
    cores = compute.machine.cpu_cores
    speed = GPU_FLOPS if compute.gpu else cpu_flops_per_core(model.hidden, compute.dtype) \
        * max(1, cores)
    seconds = training_seconds(flops / speed, "cuda" if compute.gpu else "cpu", cores,
                               compute.compile, model.hidden)
    if whole_run is not None:
        seconds += before_training_seconds(model.parameters, whole_run.converted)
        if whole_run.export_quant is not None:
            seconds += EXPORT_S_PER_GPARAM[whole_run.export_quant] * model.parameters / 1e9
    weights = 4 * model.parameters
    # Activations kept for backward, per token and layer: roughly 34 * hidden floats for
    # attention + MLP (a common rule of thumb), plus the logits of target tokens only.
    activations = 4 * work.micro_batch_tokens * model.layers * model.hidden * 34
    logits = 4 * 3 * int(work.micro_batch_tokens * work.target_fraction) * model.vocab
    # Loading holds most of the converted fp32 weights twice for a while (state dict +
    # model): for a large model that, not training, is the peak (1B: 8.6 GiB measured).
    # A bf16 run keeps a bf16 copy of the frozen matmul weights (precision.cast_frozen).
    casts = 2 * matmul if compute.dtype == "bfloat16" and not compute.gpu else 0
    peak = max(7 * weights // 4, weights + casts + activations + logits) + RUNTIME_BYTES
    return Estimate(seconds=seconds, peak_memory_bytes=peak, basis="formula")
