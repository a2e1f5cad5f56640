"""Fine-tuning runs from the app's side: drive a run's worker.

A run's folder and its records (creating, listing, reading) live in
:mod:`app.finetune.runs`. :class:`TrainingClient` starts
``python -m backends.training.worker RUN_DIR`` (by module name: this process never
imports torch) and turns its stdout into
:mod:`app.finetune.protocol` events, delivered to ``listener`` on a reader thread (a GUI
adapts them to signals) or, without a listener, through :meth:`TrainingClient.events`.
"""

from __future__ import annotations

import collections
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app.finetune import protocol as tp
from app.finetune.runs.folder import RunFolder
from app.finetune.runs.records import RunSummary
from app.paths import HearthHome

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
        self.proc: subprocess.Popen[str] | None = None
        self._queue: queue.Queue[Any] = queue.Queue()
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self._ended = False
        self.summary: RunSummary | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.alive:
            return
        root = str(Path(__file__).resolve().parents[2])
        # The worker compares this with its parent to tell "the app died" (the run is
        # interrupted, resumable) from "the app closed my stdin" after a cancel.
        env = dict(os.environ, PYTHONUNBUFFERED="1", HEARTH_PARENT_PID=str(os.getpid()))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        self._ended = False
        log = self.log_file.open("a", encoding="utf-8")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "backends.training.worker", str(self.dir)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True,
                encoding="utf-8", env=env, cwd=root, bufsize=1)
        finally:
            log.close()
        threading.Thread(target=self._read, args=(self.proc,), daemon=True,
                         name=f"train-{self.run_id}").start()

    def cancel(self) -> None:
        """Ask the worker to checkpoint and stop; it answers with ``Cancelled``."""
        if self.alive and self.proc is not None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(tp.CANCEL_COMMAND + "\n")
                self.proc.stdin.flush()
            except (OSError, ValueError):
                pass

    def kill(self) -> None:
        """Stop the worker at once (no checkpoint beyond the last periodic one)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def wait(self, timeout: float | None = None) -> int | None:
        return self.proc.wait(timeout) if self.proc is not None else None

    def _emit(self, event: Any) -> None:
        if isinstance(event, tp.Finished):
            self.summary = event.summary
        if self.listener is not None:
            self.listener(event)
        else:
            self._queue.put(event)

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        final = False
        for line in proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = tp.decode(line)
            except tp.TrainProtocolError:
                self._tail.append(line)
                continue
            if isinstance(event, tp.TrainHello) and (
                    event.protocol_version != tp.TRAIN_PROTOCOL_VERSION):
                self._emit(tp.TrainError("protocol", "the training worker speaks another "
                                         "protocol version; reinstall Hearth"))
                self.kill()
                final = True
                break
            if isinstance(event, tp.Finished | tp.TrainError | tp.Cancelled):
                final = True
            self._emit(event)
        code = proc.wait()
        if not final:
            tail = self._log_tail()
            how = (f"was killed (signal {-code})" if code < 0 else f"exited with code {code}")
            cause = f"The training worker {how}."
            self._emit(tp.WorkerExited(
                exit_code=code, last_log_lines=tail, cause=cause,
                message=f"{cause} The run can be resumed from its last checkpoint: "
                        f"hearth finetune --resume {self.run_id}"))
        if self.listener is None:
            self._queue.put(_END)

    def _log_tail(self) -> list[str]:
        try:
            lines = self.log_file.read_text("utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        return (list(self._tail) + lines)[-10:]

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
