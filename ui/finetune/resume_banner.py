"""The banner over the Set up page that offers to resume a run stopped before it ended.

Which run to offer is decided in :func:`app.finetune.runs.resume.resume_offer`; this
only shows the offer and reports the person's answer.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.finetune.runs.resume import ResumeOffer
from ui import theme
from ui.untrusted import esc


class ResumeBanner(QFrame):
    resume_requested = Signal(str)  # run id
    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_id: str | None = None
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet(f"QFrame {{ background: {theme.NOTICE_BACKGROUND}; "
                           f"border-radius: 4px }} QLabel {{ color: {theme.NOTICE_TEXT} }}")
        row = QHBoxLayout(self)
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.RichText)
        self.label.setWordWrap(True)
        self.resume_button = QPushButton("Resume")
        self.resume_button.clicked.connect(self._on_resume)
        self.dismiss_button = QPushButton("Dismiss")
        self.dismiss_button.clicked.connect(self._on_dismiss)
        row.addWidget(self.label, 1)
        row.addWidget(self.resume_button)
        row.addWidget(self.dismiss_button)
        self.hide()

    def offer(self, offer: ResumeOffer) -> None:
        run = offer.run
        self.run_id = run.run_id
        # Names and paths are a stranger's text: escaped inside the markup.
        self.label.setText(
            f"<b>A fine-tuning run {offer.how}</b> {offer.where}: {esc(run.base_model)} → "
            f"{esc(run.out_name)}, on {esc(run.dataset)}. Resume continues from its last "
            "checkpoint.")
        self.show()

    def withdraw(self) -> None:
        self.run_id = None
        self.hide()

    def _on_resume(self) -> None:
        if self.run_id:
            self.resume_requested.emit(self.run_id)

    def _on_dismiss(self) -> None:
        self.withdraw()
        self.dismissed.emit()
