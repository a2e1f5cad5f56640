"""How busy this CPU is right now, from the dtype probe's timing; the phase times of
past runs (:class:`PhaseTimes`) live in :mod:`app.finetune.phase_times`, where the app's
own estimates read them too."""

from __future__ import annotations

from app.finetune.phase_times import PhaseTimes
from app.finetune.runs.reports import DtypeChoice

__all__ = ["PhaseTimes", "QUIET_PROBE_GFLOPS_PER_CORE", "busy_factor"]

# fp32 GFLOP/s per core of the dtype probe's matmul on this project's quiet 2-core VM
# (100-115 on 2 threads), the machine the CPU training speed was calibrated on.
QUIET_PROBE_GFLOPS_PER_CORE = 52.0


def busy_factor(choice: DtypeChoice | None, threads: int) -> float:
    """How much slower than the calibration this CPU computes right now, from the dtype
    probe's own matmul timing: on a machine shared with other work the formula's speed
    is out by the same factor (measured: 9.6 GFLOP/s under load, a 12-record run 9x its
    quiet-machine estimate). Never below 1: a faster CPU is left to the measured
    estimate after the first steps."""
    if choice is None or not choice.fp32_gflops:
        return 1.0
    quiet = QUIET_PROBE_GFLOPS_PER_CORE * max(1, threads)
    return max(1.0, quiet / choice.fp32_gflops)
