"""What the training worker chose and measured on its own, as its summary reports it.

The worker decides the compute dtype by measuring (:mod:`backends.training.dtype_probe`),
decides about ``torch.compile`` by timing (:mod:`backends.training.compiled`), and
re-estimates the run after its first steps (:mod:`backends.training.trainer`). These
types live here, not beside that code, because ``summary.json`` and the ``Finished``
event carry them to the app, which must not import the worker's modules; both sides
write and read them with the run records' one codec (:mod:`app.codec`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class DtypeChoice:
    """The dtype a run computes in and why (kept in the run folder's ``dtype.json``, so
    that a resumed run computes as it started), with the measurements behind it."""

    dtype: str = "float32"
    """"float32" or "bfloat16" (autocast)."""
    reason: str = ""
    fp32_gflops: float | None = None
    bf16_gflops: float | None = None
    fp32_val_loss: float | None = None
    bf16_val_loss: float | None = None
    fp32_step_tokens_per_s: float | None = None
    bf16_step_tokens_per_s: float | None = None


@dataclass
class CompileReport:
    """What the run did about compiling its decoder layers."""

    at_step: int = 0
    eager_tokens_per_s: float = 0.0
    remaining_eager_s: float = 0.0
    compile_s: float | None = None
    """Steps that built graphs, minus their eager time."""
    compiled_tokens_per_s: float | None = None
    kept: bool | None = None
    """None while the compiled steps are still being timed."""
    failed: str | None = None

    def line(self) -> str:
        """The outcome in one line, for the CLI's summary."""
        if self.failed:
            return f"failed, trained eager ({self.failed})"
        return (f"{'kept' if self.kept else 'dropped'}: "
                f"{self.compiled_tokens_per_s or 0:.0f} tokens/s compiled against "
                f"{self.eager_tokens_per_s:.0f} eager, compiling took "
                f"{self.compile_s or 0:.0f} s")


@dataclass
class MeasuredEstimate:
    """The whole run's duration as predicted from its first steps' own speed."""

    seconds: float = 0.0
    peak_memory_bytes: int = 0
    at_step: int = 0
