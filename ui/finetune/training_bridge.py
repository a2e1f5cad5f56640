"""Qt adapter of :class:`app.finetune.client.TrainingClient`.

The client calls its listener on its reader thread; this bridge re-emits each event as
a Qt signal, which Qt delivers on the GUI thread (queued connection), so widgets never
touch worker events from another thread.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal

from app.finetune.client import TrainingClient
from app.paths import HearthHome


class TrainingBridge(QObject):
    event = Signal(object)

    def __init__(self, home: HearthHome, run_id: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.run_id = run_id
        self.client = TrainingClient(home, run_id, listener=self.event.emit)

    @property
    def alive(self) -> bool:
        return self.client.alive

    def start(self) -> None:
        self.client.start()

    def cancel(self) -> None:
        self.client.cancel()

    def shutdown(self, timeout: float = 20.0) -> None:
        """Ask the worker to checkpoint and stop; kill it if it does not in ``timeout``."""
        if not self.client.alive:
            return
        self.client.cancel()
        try:
            self.client.wait(timeout)
        except Exception:  # subprocess.TimeoutExpired: it would not stop
            self.client.kill()
