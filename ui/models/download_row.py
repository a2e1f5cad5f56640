"""One download in the hub view: progress bar, speed, time left, Pause/Resume and Cancel.

It shows a :class:`ui.models.download_task.DownloadTask` and forwards the buttons to it;
the hub view (:mod:`ui.models.hub_view`) makes the rows and drops them when they end.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.models.download import DownloadProgress
from app.models.library import ModelRecord
from app.units import format_byte_rate, format_bytes, format_clock
from ui import theme
from ui.models.download_task import DownloadTask
from ui.untrusted import PlainLabel, esc


class DownloadRow(QWidget):
    """One download: name, progress bar, speed and time left, and its buttons."""

    chat_requested = Signal(str)

    def __init__(self, task: DownloadTask, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.task = task
        self.record: ModelRecord | None = None
        # File names and repository ids come from the hub (and from download records
        # restored at every start): escaped, they are only ever text.
        self.title = QLabel(f"<b>{esc(task.file.filename)}</b> · {esc(task.file.repo)}")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.detail = PlainLabel("waiting…")
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        self.chat_button = QPushButton("Chat with this model")
        self.chat_button.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.title)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.pause_button)
        row.addWidget(self.cancel_button)
        row.addWidget(self.chat_button)
        layout.addLayout(row)
        layout.addWidget(self.detail)
        self.pause_button.clicked.connect(self._on_pause_clicked)
        self.cancel_button.clicked.connect(self._on_cancel_clicked)
        self.chat_button.clicked.connect(self._on_chat_clicked)
        task.progress.connect(self._on_progress)
        task.paused.connect(self._on_paused)
        task.cancelled.connect(self._on_cancelled)
        task.failed.connect(self._on_failed)
        task.finished.connect(self._on_finished)

    def show_paused(self, done: int, total: int) -> None:
        self.bar.setValue(int(1000 * done / total) if total else 0)
        self.detail.setText(f"Paused at {format_bytes(done, unit='MiB')} of "
                            f"{format_bytes(total, unit='MiB')} — Resume continues where it "
                            "stopped")
        self.pause_button.setText("Resume")

    def _on_progress(self, p: DownloadProgress) -> None:
        self.bar.setValue(int(1000 * p.fraction))
        # One unit for the whole download, so the numbers do not jump as they update.
        self.detail.setText(f"{format_bytes(p.done, unit='MiB')} of "
                            f"{format_bytes(p.total, unit='MiB')} · "
                            f"{format_byte_rate(p.speed_bps, unit='MiB')} · "
                            f"{format_clock(p.eta_s)} left")

    def _on_pause_clicked(self) -> None:
        if self.task.running:
            self.task.pause()
            self.pause_button.setEnabled(False)
        else:
            self.pause_button.setText("Pause")
            self.detail.setStyleSheet("")
            self.detail.setText("Resuming…")
            self.task.start()

    def _on_paused(self) -> None:
        self.pause_button.setEnabled(True)
        size = self.task.file.size or 0
        self.show_paused(self.task.download.partial_bytes, size)

    def _on_cancel_clicked(self) -> None:
        self.task.cancel()
        self.cancel_button.setEnabled(False)
        self.pause_button.setEnabled(False)

    def _on_cancelled(self) -> None:
        self.bar.setValue(0)
        self.detail.setText("Cancelled; the partial file was deleted.")
        self.pause_button.hide()
        self.cancel_button.hide()

    def _on_failed(self, message: str) -> None:
        self.detail.setStyleSheet(theme.colour_style(theme.ERROR))
        self.detail.setText(message)
        self.detail.setWordWrap(True)
        self.pause_button.setEnabled(True)
        self.pause_button.setText("Retry")
        self.cancel_button.setEnabled(True)

    def _on_finished(self, record: ModelRecord) -> None:
        self.record = record
        self.bar.setValue(1000)
        self.detail.setText(f"Installed as {record.name} (SHA-256 verified)")
        self.pause_button.hide()
        self.cancel_button.hide()
        self.chat_button.show()

    def _on_chat_clicked(self) -> None:
        if self.record is not None:
            self.chat_requested.emit(self.record.name)
