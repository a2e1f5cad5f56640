"""The one loop that follows a training worker on the command line: ``hearth finetune``
and ``hearth teach`` alike.

Both show the worker's events the same way (:class:`TrainingProgressView`) and end by the
same rules: Ctrl+C asks the worker to stop after its step, saving a checkpoint, and the
loop keeps reading until it has (``hearth finetune --resume RUN_ID`` continues it); a
cancelled run exits 130, a worker that fails 1 (2 when the data or the model was at
fault), and a finished run what the command makes of its summary.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol

from app.cli.progress import ProgressLine
from app.errors import ExitCode
from app.finetune import protocol as tp
from app.finetune.runs.records import RunSummary
from app.units import format_bytes, format_clock, format_duration, format_token_rate

BAD_INPUT_KINDS = ("bad_data", "bad_model")
"""A :class:`tp.Error` of these kinds is the person's to fix: exit code 2."""


class Worker(Protocol):
    """What the loop needs of :class:`app.finetune.client.TrainingClient`."""

    def start(self) -> None: ...
    def events(self) -> Any: ...
    def cancel(self) -> None: ...
    def wait(self) -> Any: ...


def follow_run(client: Worker, finished: Callable[[RunSummary], int],
               cancelled: Callable[[tp.Cancelled], str]) -> int:
    """Start ``client``'s worker, show its events on stderr and return the exit code:
    ``finished(summary)`` for a finished run; for a cancelled one, ``cancelled(event)``
    is said first (what is kept, how to go on)."""
    client.start()
    view = TrainingProgressView(sys.stderr)
    events = client.events()
    while True:
        try:
            event = next(events)
        except StopIteration:
            return ExitCode.FAILED  # the worker's output ended without a last word
        except KeyboardInterrupt:
            client.cancel()
            print("\nstopping after this step (saving a checkpoint)...", file=sys.stderr)
            continue
        view.show(event)
        if isinstance(event, tp.Finished):
            client.wait()
            return finished(event.summary)
        if isinstance(event, tp.Cancelled):
            client.wait()
            print(cancelled(event), file=sys.stderr)
            return ExitCode.CANCELLED
        if isinstance(event, tp.Error):
            print(f"hearth: {event.message}", file=sys.stderr)
            client.wait()
            return (ExitCode.BAD_INPUT if event.error_kind in BAD_INPUT_KINDS
                    else ExitCode.FAILED)
        if isinstance(event, tp.WorkerDied):
            print(f"hearth: {event.message}", file=sys.stderr)
            for line in event.last_log_lines[-5:]:
                print(f"  {line}", file=sys.stderr)
            return ExitCode.FAILED


class TrainingProgressView:
    """A training worker's events on the CLI: phases as lines, steps on the progress line
    (the CLI's one progress display, :mod:`app.cli.progress`)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.line = ProgressLine(stream)

    def show(self, event: Any) -> None:
        out = self.stream
        if isinstance(event, tp.TrainHello):
            print(f"worker on {event.device} ({event.dtype})", file=out)
        elif isinstance(event, tp.Phase) and event.name != "training":
            self.line.end_line()
            print(f"{event.message}...", file=out)
        elif isinstance(event, tp.DataReady):
            print(f"tokenized: {event.train_records} train / {event.val_records} validation "
                  f"records, {event.train_tokens:,} tokens ({event.target_tokens:,} with "
                  f"loss), longest {event.longest_record_tokens} tokens, "
                  f"{event.truncated_records} truncated to {event.max_seq_len}; "
                  f"{event.total_steps} steps", file=out)
        elif isinstance(event, tp.EstimateEvent):
            self.line.end_line()
            label = "estimate" if event.basis == "formula" else "measured estimate"
            print(f"{label}: about {format_duration(event.seconds)} in all, peak memory "
                  f"about {format_bytes(event.peak_memory_bytes)}", file=out)
        elif isinstance(event, tp.Progress):
            self._progress(event)
        elif isinstance(event, tp.Evaluation) and not self.line.tty:
            print(f"  step {event.step}: validation loss {event.val_loss:.4f}", file=out)
        elif isinstance(event, tp.Log):  # what the run decided, and why, too
            self.line.end_line()
            print(("" if event.level == "info" else "warning: ") + event.message, file=out)
        out.flush()

    def _progress(self, e: tp.Progress) -> None:
        steps = (f"{e.step}/{e.total_steps} loss {e.loss:.4f} lr {e.learning_rate:.2e} "
                 f"{format_token_rate(e.tokens_per_s)} ETA {format_clock(e.eta_s)}")
        self.line.show(e.step / max(1, e.total_steps), f"{steps} epoch {e.epoch:.2f} ",
                       log_text=f"  step {steps} mem {format_bytes(e.peak_memory_bytes)}")
