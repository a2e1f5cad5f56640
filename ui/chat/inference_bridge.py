"""Qt adapter of :class:`app.inference.client.InferenceClient`.

The client calls its listener on a background thread; this bridge re-emits each event
as a Qt signal, which Qt delivers on the GUI thread (queued connection), so widgets
never touch worker events from another thread.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal

from app.inference.client import InferenceClient
from app.paths import HearthHome


class InferenceBridge(QObject):
    event = Signal(object)

    def __init__(self, log_file: Any = None, parent: QObject | None = None,
                 home: HearthHome | None = None) -> None:
        super().__init__(parent)
        self.client = InferenceClient(listener=self.event.emit, log_file=log_file,
                                      home=home)

    def shutdown(self) -> None:
        self.client.close()
