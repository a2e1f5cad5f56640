"""Help > System check: the same report as ``hearth doctor``, one click away.

The check starts child processes and takes a few seconds, so it runs on a background
thread; the report is plain text (it quotes CPU names and llama.cpp's own words). When
Hearth remembers that llama.cpp's optimized kernels crashed here, *Forget kernel crash*
drops that memory and runs the check again (after a llama.cpp upgrade, or when the crash
had another cause, the person should not need to find ``kernels.json``).
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

from app.doctor import DoctorReport, run_doctor
from app.inference.kernels import KernelMemory
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
        self.forget = QPushButton("Forget kernel crash")
        self.forget.setToolTip("Hearth remembers that llama.cpp's optimized CPU kernels "
                               "crashed on this machine and uses the safe ones; forget "
                               "that and test the optimized ones again")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.again, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.forget, QDialogButtonBox.ButtonRole.ActionRole)
        self.forget.setVisible(KernelMemory(home.kernels_file).safe_record() is not None)
        buttons.rejected.connect(self.reject)
        self.again.clicked.connect(lambda: self.start())
        self.forget.clicked.connect(lambda: self.start(forget_kernels=True))
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.text, 1)
        layout.addWidget(buttons)
        self.background = Background(self)
        self.finished.connect(lambda _code: self.background.shutdown(timeout=0))

    def start(self, forget_kernels: bool = False) -> None:
        self.again.setEnabled(False)
        self.forget.setEnabled(False)
        self.status.setText("Checking this machine and running a short self-test…")
        self.background.run(lambda: run_doctor(self.home, forget_kernels=forget_kernels),
                            self._on_done, self._on_error, name="hearth-doctor")

    def _on_done(self, report: DoctorReport) -> None:
        self.report = report
        self.again.setEnabled(True)
        self.forget.setEnabled(True)
        self.forget.setVisible(report.kernels.remembered is not None)
        self.status.setText("Everything works." if report.healthy else
                            f"{len(report.problems)} problem(s): see the end of the report.")
        self.text.setPlainText("\n".join(report.lines()))

    def _on_error(self, exc: BaseException) -> None:
        self.again.setEnabled(True)
        self.forget.setEnabled(True)
        self.status.setText(f"The check itself failed: {exc}")
