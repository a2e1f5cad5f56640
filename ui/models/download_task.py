"""Qt adapter of one :class:`app.models.download.Download`: a thread, signals, pause/resume/cancel.

The transfer runs on its own Python thread and reports through the download's
callback; this object re-emits that as signals, which Qt queues to the GUI thread.
Pause and cancel only set the download's flags, so the GUI never waits on the network.
"""

from __future__ import annotations

import threading
from enum import StrEnum
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.models.download import Download, DownloadCancelled, DownloadPaused
from app.models.hub import HubFile
from app.models.library import Library
from app.paths import HearthHome


class TaskState(StrEnum):
    """Where a download stands, as its row shows it."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    """Stopped with its partial file kept (by the person, or left by an earlier session)."""
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DownloadTask(QObject):
    progress = Signal(object)  # app.models.download.DownloadProgress
    finished = Signal(object)  # app.models.library.ModelRecord
    failed = Signal(str)
    paused = Signal()
    cancelled = Signal()

    def __init__(self, home: HearthHome, library: Library, file: HubFile,
                 parent: QObject | None = None, **download_options: Any) -> None:
        super().__init__(parent)
        self.file = file
        self.download = Download(home, library, file, self.progress.emit, **download_options)
        self._thread: threading.Thread | None = None
        self.state = TaskState.IDLE

    @property
    def running(self) -> bool:
        """Transferring. A transfer that has said how it ended is not, though its thread
        may not have returned yet: a Resume or Retry pressed in that instant (seen on a
        busy machine) was taken for a Pause, or ignored, and the row stayed as it was."""
        return (self.state is TaskState.RUNNING and self._thread is not None
                and self._thread.is_alive())

    def _settle(self) -> None:
        """Wait out the last transfer's thread, which returns right after its end."""
        if self._thread is not None and not self.running:
            self._thread.join()

    def start(self) -> None:
        """Start, or resume after a pause or a failure (continues from the partial file)."""
        if self.running:
            return
        self._settle()
        self.state = TaskState.RUNNING
        self._thread = threading.Thread(target=self._work, daemon=True,
                                        name=f"download-{self.file.filename}")
        self._thread.start()

    def pause(self) -> None:
        if self.running:
            self.download.pause()

    def cancel(self) -> None:
        if self.running:
            self.download.cancel()
        else:
            self._settle()
            self.download.discard()
            self.state = TaskState.CANCELLED
            self.cancelled.emit()

    def wait(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self) -> None:
        try:
            record = self.download.run()
        except DownloadPaused:
            self.state = TaskState.PAUSED
            self.paused.emit()
        except DownloadCancelled:
            self.state = TaskState.CANCELLED
            self.cancelled.emit()
        except Exception as exc:  # every failure becomes a message
            self.state = TaskState.FAILED
            self.failed.emit(str(exc))
        else:
            self.state = TaskState.DONE
            self.finished.emit(record)
