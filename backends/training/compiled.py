"""``torch.compile`` of the decoder layers: on a CPU, for a run long enough to pay for
it, and kept only if it measures faster (``HEARTH_TRAIN_COMPILE``: ``auto``, the default;
``off``; ``on`` to compile any run).

On a CPU a LoRA step of a small model spends about half its time outside the matmuls:
RMSNorm, rotary, SiLU, residual adds and dtype casts, each a pass over memory
(torch.profiler, BENCHMARKS.md). Inductor fuses those chains. Measured on the 2-core
Sapphire Rapids VM over the same eight micro-batches of the bench data, alternating:
compiled layers ran 321-358 tokens/s against 203-258 eager in bf16, 142-210 against
80-173 in fp32; in a 405-step run, 316 against 231 tokens/s (median steps).

Compiling is slow on 2 cores (the first graph 43-82 s), and every new kind of input
builds another graph: the first layer's input (the frozen embeddings) does not require
grad and the others' does, so the first layer stays eager; a part of one row (dynamo
specialises a batch of 1) builds one more, once. A step that built a graph is compile
time, not the speed to come: it is left out of the speed the trainer verifies and of
the step times its estimates use. (Before, such steps counted: in a 135-step run the
verification saw 47 tokens/s and dropped the compiled layers, 476 s against 366 eager.)

``auto`` compiles when the remaining eager time, shortened by the expected gain, would
save more than compiling costs (``app.finetune.estimate.worth_compiling``; the
estimates price it the same way). The trainer then times the compiled steps against
the eager ones (median step speed) and goes back to eager unless they are faster. A
compile that fails (no C++ compiler, an operator inductor cannot lower) falls back to
eager with a log line; the step is redone. GPU runs compile only with ``on``: not
measured here.

Validation passes run eager: under ``no_grad`` a compiled layer would compile a second
graph, and they are a small share of a run.

Inductor keeps its kernels in ``<home>/cache/inductor`` (set by the worker): code that
Hearth generated and compiled on this machine, in the person's own folder; a later run
of the same model finds them and compiles faster.

``TORCH_COMPILE_BACKEND`` (as torchtune reads it) picks another dynamo backend: the tests
of the wiring use ``aot_eager``, which traces the same graphs in seconds instead of
building C++ kernels for a minute. Hearth sets no backend: inductor.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from app.finetune.runs.reports import CompileReport

log = logging.getLogger(__name__)

VERIFY_STEPS = 8  # compiled steps timed before deciding to keep them
MIN_GAIN = 1.05  # what "faster" has to mean to keep it, beside step-to-step noise
BACKEND_ENV = "TORCH_COMPILE_BACKEND"


class LayerCompiler:
    """Compiles a decoder's layers, times them, and switches them back off."""

    def __init__(self, layers: Any) -> None:
        # All but the first: its input (the frozen embeddings) does not require grad and
        # the others' does, so compiling it too costs a second graph (and a second one
        # for a part of one row: dynamo specialises a batch of 1), ~25-50 s each on 2
        # cores, for one layer's worth of speed.
        self.layers = list(layers)[1:]
        self.report: CompileReport | None = None
        self._impls: list[Any] = []
        self._timed: list[tuple[float, int]] = []  # compiled (seconds, tokens)
        self._graphs = -1  # dynamo's graph count when the step began; -1: not compiled

    @property
    def active(self) -> bool:
        return bool(self._impls) and self.layers[0]._compiled_call_impl is not None

    @property
    def verifying(self) -> bool:
        return self.active and self.report is not None and self.report.kept is None

    @property
    def before_first_graph(self) -> bool:
        """Compiled, and no step has built a graph yet: the next step compiles (and a
        failure there means the layers cannot be compiled, not a bad step)."""
        return self.verifying and self.report is not None and self.report.compile_s is None

    def start(self, step: int, eager_tokens_per_s: float, remaining_eager_s: float
              ) -> str | None:
        """Compile the layers (lazily: the next step builds the graph). Returns why not
        (also in the report) where this machine has no C++ compiler for inductor."""
        import torch._dynamo
        from torch._inductor.cpp_builder import get_cpp_compiler

        self.report = CompileReport(step, eager_tokens_per_s, remaining_eager_s)
        backend = os.environ.get(BACKEND_ENV, "inductor")
        try:
            if backend == "inductor":
                get_cpp_compiler()
        except Exception as exc:  # inductor's own search, its own errors
            self.report.failed, self.report.kept = f"no C++ compiler: {exc}"[:200], False
            return self.report.failed
        # A frame inductor cannot compile later (a new shape) runs eager, not fails.
        torch._dynamo.config.suppress_errors = True
        for layer in self.layers:
            layer.compile(dynamic=True, backend=backend)
        self._impls = [layer._compiled_call_impl for layer in self.layers]
        return None

    def fail(self, exc: BaseException) -> None:
        """The first compiled step raised: back to eager for good."""
        log.warning("torch.compile failed, training eager: %s", exc)
        self._set(False)
        self._impls = []
        self._graphs = -1
        if self.report is not None:
            self.report.failed = f"{type(exc).__name__}: {str(exc)[:200]}"
            self.report.kept = False

    def begin_step(self) -> None:
        """A step starts: note how many graphs dynamo has built so far."""
        self._graphs = _graphs() if self.active else -1

    def timed(self, seconds: float, tokens: int) -> tuple[bool, str | None]:
        """Account a step. Returns whether it built a graph (its time is compile time,
        not the speed to come: the first compiled step and each recompile, e.g. for the
        first part of one row) and, once enough steps are timed, a sentence saying
        whether compilation stays (else None)."""
        report = self.report
        if report is None or self._graphs < 0:
            return False, None
        if _graphs() != self._graphs:
            eager = tokens / max(1e-9, report.eager_tokens_per_s)
            report.compile_s = (report.compile_s or 0.0) + max(0.0, seconds - eager)
            return True, None
        if report.kept is not None:
            return False, None
        self._timed.append((seconds, tokens))
        if len(self._timed) < VERIFY_STEPS:
            return False, None
        speeds = sorted(t / max(1e-9, s) for s, t in self._timed)
        speed = speeds[len(speeds) // 2]
        report.compiled_tokens_per_s = speed
        report.kept = speed >= MIN_GAIN * report.eager_tokens_per_s
        if not report.kept:
            self._set(False)
        ratio = speed / max(1e-9, report.eager_tokens_per_s)
        return False, (f"compiled layers ran {speed:.0f} tokens/s against "
                       f"{report.eager_tokens_per_s:.0f} eager ({ratio:.2f}x, compiling took "
                       f"{report.compile_s or 0:.0f} s): "
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


def _graphs() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]
