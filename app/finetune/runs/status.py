"""Where a run stands, and the one rule for which runs can be resumed."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's status as ``state.json`` records it (a ``str``, so JSON and old code that
    compares with plain strings keep working)."""

    CREATED = "created"
    RUNNING = "running"
    EXPORTING = "exporting"
    CANCELLED = "cancelled"
    """Stopped on request (Cancel, Ctrl+C, a closed window), after saving a checkpoint."""
    INTERRUPTED = "interrupted"
    """The worker or the app died mid-run; the last periodic checkpoint remains."""
    FAILED = "failed"
    FINISHED = "finished"
    REFUSED = "refused"
    """A teach run whose gate refused the result: nothing was exported, and its
    checkpoints are gone (training it again would teach the same harm)."""

    @classmethod
    def parse(cls, value: object) -> RunStatus:
        """A status read from disk; anything unknown (a newer Hearth's) is ``created``,
        which nothing offers to resume or delete as finished."""
        try:
            return cls(str(value))
        except ValueError:
            return cls.CREATED

    @property
    def active(self) -> bool:
        """The worker says it is working (whether it still lives is checked apart)."""
        return self in (RunStatus.RUNNING, RunStatus.EXPORTING)

    @property
    def resumable(self) -> bool:
        """The run ended before finishing: failed, cancelled or interrupted.

        The rule, used by the GUI and the CLI alike: a run is resumable when it has one of
        these statuses AND a checkpoint to continue from (see
        :func:`can_resume`); a failure before the first checkpoint (a model that does
        not load, data that does not tokenize) would only fail the same way again."""
        return self in (RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED)


def can_resume(status: RunStatus, has_checkpoint: bool) -> bool:
    """The one rule: failed or stopped, with a checkpoint."""
    return status.resumable and has_checkpoint
