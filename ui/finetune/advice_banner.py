"""The notice under the Set up page's presets when the run will not learn new facts.

What is said and which preset is offered come from :func:`app.finetune.advice.fact_advice`
(measured runs); this shows it before Start and switches the preset in one click.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QWidget

from app.finetune.advice import Advice
from ui import theme
from ui.untrusted import PlainLabel


class AdviceBanner(QFrame):
    use_preset = Signal(str)  # the preset's name

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.advice: Advice | None = None
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet(f"QFrame {{ background: {theme.NOTICE_BACKGROUND}; "
                           f"border-radius: 4px }} QLabel {{ color: {theme.NOTICE_TEXT} }}")
        row = QHBoxLayout(self)
        self.label = PlainLabel()
        self.label.setWordWrap(True)
        self.switch_button = QPushButton()
        self.switch_button.clicked.connect(self._on_switch)
        row.addWidget(self.label, 1)
        row.addWidget(self.switch_button)
        self.hide()

    def show_advice(self, advice: Advice | None) -> None:
        """Show ``advice``, or hide the banner when there is none."""
        self.advice = advice
        if advice is None:
            self.hide()
            return
        self.label.setText("⚠ " + advice.message)
        self.switch_button.setText(f"Use “{advice.label}”")
        self.show()

    def _on_switch(self) -> None:
        if self.advice is not None:
            self.use_preset.emit(self.advice.preset)
