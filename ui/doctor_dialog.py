"""Help > System check: the same report as ``hearth doctor``, one click away.

The check starts child processes and takes a few seconds, so it runs on a background
thread; the report is plain text (it quotes CPU names and llama.cpp's own words).
"""

from __future__ import annotations

from PySide6.QtGui import QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.machine.doctor import DoctorReport, run_doctor
from app.paths import HearthHome
from ui.background import Background


class DoctorDialog(QDialog):
    def __init__(self, home: HearthHome, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.home = home
        self.report: DoctorReport | None = None
        self.setWindowTitle("System check")
        self.resize(760, 460)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.again = QPushButton("Run again")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.again, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        self.again.clicked.connect(self.start)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        self.background = Background(self)
        self.finished.connect(lambda _code: self.background.shutdown(timeout=0))

    def start(self) -> None:
        self.again.setEnabled(False)
        self.status.setText("Checking this machine and running a short self-test…")
        self.background.run(lambda: run_doctor(self.home), self._on_done, self._on_error,
                            name="hearth-doctor")

    def _on_done(self, report: DoctorReport) -> None:
        self.report = report
        self.again.setEnabled(True)
        self.status.setText("Everything works." if report.healthy else
                            f"{len(report.problems)} problem(s): see the end of the report.")
        self.text.setPlainText("\n".join(report.lines()))

    def _on_error(self, exc: BaseException) -> None:
        self.again.setEnabled(True)
        self.status.setText(f"The check itself failed: {exc}")
