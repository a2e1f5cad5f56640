"""How long a Teach takes, in the Teach panel: the estimate beside the button before it
is pressed, and the running time beside the phase while it goes.

The figures come from :mod:`app.teach.estimate` (this machine's own finished teach runs,
or the fine-tune formula on a first run). The estimate is computed off the GUI thread
(it reads run folders and, on a first run, the model's GGUF header) and only again when
the corrections, the base or the runs change. While a run goes, a one-second timer
re-reads the clock, so an estimate the run has outgrown is replaced by how long it has
taken so far instead of staying on screen.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QLabel, QWidget

from app.chat.corrections import CorrectionStore
from app.finetune import protocol as tp
from app.models.library import LibraryError
from app.teach.estimate import MEASURED, TeachEstimate, before_teach, running_note
from app.teach.refusal import snapshot
from app.teach.versions import VersionStore
from app.workspace import Workspace
from ui.background import Background

log = logging.getLogger("hearth.ui")


class EstimateLabel(QLabel):
    """Beside Teach: "About 4 min for 10 corrections on this computer (measured…)"."""

    def __init__(self, workspace: Workspace, corrections: CorrectionStore,
                 versions: VersionStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home, self.library = workspace.home, workspace.library
        self.corrections, self.versions = corrections, versions
        self.estimate: TeachEstimate | None = None
        self._key: tuple[Any, ...] | None = None
        self._background = Background(self)
        self.setTextFormat(Qt.TextFormat.PlainText)  # it quotes a model's name
        self.setWordWrap(True)
        self.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        self.setContentsMargins(12, 0, 0, 0)  # apart from the title it follows
        self.hide()

    def show_for(self, base: str | None) -> None:
        """Estimate a Teach of ``base`` (None hides the label), again only when its
        corrections, its active version or the finished runs changed; the old figure
        stays meanwhile."""
        try:
            record = self.library.get(base) if base else None
        except LibraryError:
            record = None
        if record is None:
            self._key, self.estimate = None, None
            self.hide()
            return
        key = (record.name, str(record.path), self._newest_run(),
               self.versions.active(record.name),  # a round continues the active version
               snapshot(self.corrections, self.versions, record.name))
        if key == self._key:
            self.setVisible(self.estimate is not None)
            return
        self._key = key
        home, store = self.home, self.corrections
        self._background.run(lambda: before_teach(home, store, record),
                             lambda found: self._on_estimated(key, found),
                             lambda exc: self._on_failed(key, exc), name="teach-estimate")

    def _newest_run(self) -> tuple[str, int]:
        """The newest run folder and when it last changed (its summary.json arrived)."""
        try:
            newest = max(self.home.runs.iterdir(), key=lambda p: p.name, default=None)
            return (newest.name, newest.stat().st_mtime_ns) if newest else ("", 0)
        except OSError:
            return ("", 0)

    def _on_estimated(self, key: tuple[Any, ...], found: TeachEstimate | None) -> None:
        if key != self._key:
            return  # the corrections changed meanwhile: a newer estimate is coming
        self.estimate = found
        self.setText(found.sentence() if found is not None else "")
        self.setVisible(found is not None)

    def _on_failed(self, key: tuple[Any, ...], exc: BaseException) -> None:
        """No figure is better than a made-up one; the reason goes to the log."""
        log.warning("the estimate before Teach failed: %s", exc)
        self._on_estimated(key, None)

    def shutdown(self) -> None:
        self._background.shutdown(timeout=2.0)


class RunClock(QObject):
    """A running Teach's phase and time: the best estimate so far, the clock, and the
    training's own pace. :meth:`text` says them; ``ticked`` when it changed (every
    second, and on the worker's events), only while a run goes."""

    ticked = Signal()

    def __init__(self, parent: QObject | None = None,
                 now: Callable[[], float] = time.monotonic) -> None:
        super().__init__(parent)
        self.now = now
        self.started: float | None = None
        self.phase = ""
        self.seconds: float | None = None
        self.basis = ""
        self._from_before = False
        self.training_left: float | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self.ticked)

    def start(self, phase: str, before: TeachEstimate | None) -> None:
        """A run starts now, with the estimate shown before Teach (if there was one)."""
        self.started, self.phase = self.now(), phase
        self.seconds = before.seconds if before is not None else None
        self.basis = before.basis if before is not None else ""
        self._from_before = before is not None
        self.training_left = None
        self.timer.start()
        self.ticked.emit()

    def stop(self) -> None:
        self.timer.stop()
        self.started = None

    def on_event(self, event: Any) -> None:
        """Follow the worker: its phase, its estimates and the training's pace. Its
        first estimate ("formula") does not replace one measured on this machine's past
        runs; its measurement after the first steps does."""
        if isinstance(event, tp.Phase):
            self.phase = event.message[:1].upper() + event.message[1:] + "…"
            if event.name != "training":
                self.training_left = None
        elif isinstance(event, tp.EstimateEvent):
            if not (self._from_before and self.basis == MEASURED
                    and event.basis != MEASURED):
                self.seconds, self.basis = event.seconds, event.basis
                self._from_before = False
        elif isinstance(event, tp.Progress):
            self.training_left = event.eta_s
        else:
            return
        if self.started is not None:
            self.ticked.emit()

    def text(self) -> str:
        """"Training 48 steps on cpu…  (measured: about 7 min in all, about 3 min left)",
        or, overrun, "…  (taking longer than measured (about 7 min): 9 min so far)"."""
        if self.started is None:
            return self.phase
        return self.phase + running_note(self.seconds, self.basis,
                                         self.now() - self.started, self.training_left)
