"""Which run to offer for Resume when the app starts again, and how to say it.

A run the worker reports as interrupted (the app or the worker died) is offered. So is
the run that closing the window stopped: closing stops a run with a checkpoint, which
records it as "cancelled", and a worker that dies before it records its state leaves it
looking cancelled too; the GUI remembers that run's id (``closed_run``) so it is not
mistaken for one the person cancelled on purpose, which is never pressed on them.
Either way the run must be resumable by the one rule (:func:`can_resume`).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.finetune.runs.folder import RunInfo
from app.finetune.runs.status import RunStatus


@dataclass
class ResumeOffer:
    """The run to offer, with what the banner says about it."""

    run: RunInfo
    closed: bool
    """True: stopped when Hearth closed; False: interrupted by a crash."""

    @property
    def how(self) -> str:
        return "was stopped when Hearth closed" if self.closed else "was interrupted"

    @property
    def where(self) -> str:
        """"at step 12 of 30" (or without the total when it is not known yet)."""
        total = f" of {self.run.total_steps}" if self.run.total_steps else ""
        return f"at step {self.run.step}{total}"


def resume_offer(runs: list[RunInfo], closed_run: str | None) -> ResumeOffer | None:
    """The newest run that stopped before it finished without the person choosing so."""
    stopped = [r for r in runs if r.resumable and (
        r.status == RunStatus.INTERRUPTED or r.run_id == closed_run)]
    if not stopped:
        return None
    run = stopped[-1]
    return ResumeOffer(run, closed=run.status != RunStatus.INTERRUPTED)
