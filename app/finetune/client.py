"""Fine-tuning runs from the app's side: drive a run's worker.

A run's folder and its records (creating, listing, reading) live in
:mod:`app.finetune.runs`. :class:`TrainingClient` runs
``python -m backends.training.worker RUN_DIR`` under a
:class:`~app.workers.supervisor.Supervisor` (by module name: this process never imports
torch) and turns its stdout into
:mod:`app.finetune.protocol` events, delivered to ``listener`` on a reader thread (a GUI
adapts them to signals) or, without a listener, through :meth:`TrainingClient.events`.
"""

from __future__ import annotations

import contextlib
import os
import queue
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app.finetune import protocol as tp
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSummary
from app.paths import HearthHome
from app.workers.lifecycle import WorkerDied
from app.workers.supervisor import Supervisor, WorkerGone, WorkerSpec

Listener = Callable[[Any], None]
_END = object()


class TrainingClient:
    """One run's worker process. ``start`` it, read its events, ``cancel`` it any time.

    To resume a cancelled or interrupted run, build a client for the same ``run_id``
    and ``start`` it again: the worker continues from the run's last checkpoint.
    """

    def __init__(self, home: HearthHome, run_id: str, listener: Listener | None = None,
                 log_file: Path | None = None) -> None:
        self.home = home
        self.run_id = run_id
        self.folder = RunFolder.of(home, run_id)
        self.dir = self.folder.path
        self.listener = listener
        self.log_file = log_file or self.folder.log_file
        self._queue: queue.Queue[Any] = queue.Queue()
        self.summary: RunSummary | None = None
        # The worker compares HEARTH_PARENT_PID with its parent to tell "the app died"
        # (the run is interrupted, resumable) from "the app closed my stdin" after a cancel.
        self.worker = Supervisor(
            WorkerSpec("backends.training.worker", (str(self.dir),), name="training worker",
                       advice="The run can be resumed from its last checkpoint: hearth "
                              f"finetune --resume {run_id}",
                       protocol_version=tp.TRAIN_PROTOCOL_VERSION, channel="pipe",
                       log_file=self.log_file, env={"HEARTH_PARENT_PID": str(os.getpid())}),
            decode=lambda data: tp.decode(data.decode("utf-8")),
            encode=lambda command: str(command).encode("utf-8"),
            on_event=self._emit, on_end=self._on_end)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        """The worker's process, or None before :meth:`start`."""
        return self.worker.proc

    @property
    def alive(self) -> bool:
        return self.worker.alive

    def start(self) -> None:
        if not self.alive:
            self.worker.start()

    def cancel(self) -> None:
        """Ask the worker to checkpoint and stop; it answers with ``Cancelled``."""
        with contextlib.suppress(WorkerGone):  # already gone: nothing to cancel
            self.worker.send(tp.CANCEL_COMMAND)

    def kill(self) -> None:
        """Stop the worker at once (no checkpoint beyond the last periodic one)."""
        self.worker.kill()

    def wait(self, timeout: float | None = None) -> int | None:
        return self.worker.wait(timeout)

    def _emit(self, event: Any) -> None:
        if isinstance(event, tp.Finished | tp.Error | tp.Cancelled):
            self.worker.expect_exit()  # its last word: the exit that follows is no death
        if isinstance(event, tp.Finished):
            self.summary = event.summary
        if self.listener is not None:
            self.listener(event)
        else:
            self._queue.put(event)

    def _on_end(self, died: WorkerDied | None) -> None:
        if died is not None:
            self._emit(died)
        if self.listener is None:
            self._queue.put(_END)

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """Every event until the worker ends (only without a listener)."""
        while True:
            try:
                event = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise TimeoutError("the training worker went quiet") from None
            if event is _END:
                return
            yield event
