"""``torch.compile`` of the decoder layers, opt-in (``HEARTH_TRAIN_COMPILE=auto|on``):
compiled only for a run long enough to pay for it, kept only if it measures faster.

On a CPU a LoRA step of a small model spends about half its time outside the matmuls:
RMSNorm, rotary, SiLU, residual adds and dtype casts, each a pass over memory
(torch.profiler, BENCHMARKS.md). Inductor fuses those chains. Measured on the 2-core
Sapphire Rapids VM over the same eight micro-batches of the bench data, alternating:
compiled layers ran 321-358 tokens/s against 203-258 eager in bf16, 142-210 against
80-173 in fp32. But compiling is slow on 2 cores: 82-122 s for the first graph, and a
real run then recompiles (a part of one row: dynamo specialises a batch of 1; the first
layer's input does not require grad, the others' do), 25-50 s each. In a 135-step run
(68,793 tokens) that cost was not paid back and the verification dropped the compiled
layers: 476 s against 366 s eager. So it is off by default until a long run measures a
net gain; ``auto`` compiles when the remaining eager time, shortened by the expected
gain, would save more than compiling costs (``app.finetune.settings.worth_compiling``).

Either way the trainer measures: it times the compiled steps against the eager ones
(median step speed, so a step that recompiled does not decide) and goes back to eager
unless they are faster. A compile that fails (no C++ compiler, an operator inductor
cannot lower) falls back to eager with a log line; the step is redone. GPU runs stay
eager: not measured here.

Validation passes run eager: under ``no_grad`` a compiled layer would compile a second
graph, and they are a small share of a run.

Inductor keeps its kernels in ``<home>/cache/inductor`` (set by the worker): code that
Hearth generated and compiled on this machine, in the person's own folder.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

VERIFY_STEPS = 8  # compiled steps timed before deciding to keep them
MIN_GAIN = 1.05  # what "faster" has to mean to keep it, beside step-to-step noise


@dataclass
class CompileReport:
    """What the run did about compiling, for its summary and the benchmark."""

    at_step: int
    eager_tokens_per_s: float
    remaining_eager_s: float
    compile_s: float | None = None  # the first compiled step, minus an eager step's time
    compiled_tokens_per_s: float | None = None
    kept: bool | None = None
    failed: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 1) if isinstance(v, float) else v)
                for k, v in asdict(self).items()}


class LayerCompiler:
    """Compiles a decoder's layers, times them, and switches them back off."""

    def __init__(self, layers: Any) -> None:
        self.layers = list(layers)
        self.report: CompileReport | None = None
        self._impls: list[Any] = []
        self._timed: list[tuple[float, int]] = []  # compiled (seconds, tokens)

    @property
    def active(self) -> bool:
        return bool(self._impls) and self.layers[0]._compiled_call_impl is not None

    @property
    def verifying(self) -> bool:
        return self.active and self.report is not None and self.report.kept is None

    def start(self, step: int, eager_tokens_per_s: float, remaining_eager_s: float) -> None:
        import torch._dynamo

        self.report = CompileReport(step, eager_tokens_per_s, remaining_eager_s)
        # A frame inductor cannot compile later (a new shape) runs eager, not fails.
        torch._dynamo.config.suppress_errors = True
        for layer in self.layers:
            layer.compile(dynamic=True)
        self._impls = [layer._compiled_call_impl for layer in self.layers]

    def fail(self, exc: BaseException) -> None:
        """The first compiled step raised: back to eager for good."""
        log.warning("torch.compile failed, training eager: %s", exc)
        self._set(False)
        self._impls = []
        if self.report is not None:
            self.report.failed = f"{type(exc).__name__}: {str(exc)[:200]}"
            self.report.kept = False

    def timed(self, seconds: float, tokens: int) -> str | None:
        """Account a compiled step; once enough are timed, keep or drop compilation and
        return a sentence saying which (else None)."""
        report = self.report
        if report is None or report.kept is not None:
            return None
        if report.compile_s is None:  # the first step compiled the graphs
            eager = tokens / max(1e-9, report.eager_tokens_per_s)
            report.compile_s = max(0.0, seconds - eager)
            return None
        self._timed.append((seconds, tokens))
        if len(self._timed) < VERIFY_STEPS:
            return None
        speeds = sorted(t / max(1e-9, s) for s, t in self._timed)
        speed = speeds[len(speeds) // 2]
        report.compiled_tokens_per_s = speed
        report.kept = speed >= MIN_GAIN * report.eager_tokens_per_s
        if not report.kept:
            self._set(False)
        ratio = speed / max(1e-9, report.eager_tokens_per_s)
        return (f"compiled layers ran {speed:.0f} tokens/s against {report.eager_tokens_per_s:.0f}"
                f" eager ({ratio:.2f}x, compiling took {report.compile_s:.0f} s): "
                + ("kept" if report.kept else "back to eager"))

    def release(self) -> None:
        """Training is over: the merge and the export's checks run the layers eager."""
        self._set(False)
        self._impls = []

    @contextlib.contextmanager
    def eager(self) -> Iterator[None]:
        """Run the layers eager inside this block (validation passes)."""
        was = self.active
        self._set(False)
        try:
            yield
        finally:
            if was:
                self._set(True)

    def _set(self, on: bool) -> None:
        for layer, impl in zip(self.layers, self._impls, strict=False):
            layer._compiled_call_impl = impl if on else None

