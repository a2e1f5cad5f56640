"""The card at the foot of the conversation that says what went wrong (the model failed
to load, a reply failed, the database is busy) and offers the one button that fixes it;
the problem itself, its text and its action, is the chat view model's."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QWidget

from ui.chat.chat_view_model import ChatViewModel, ProblemAction
from ui.untrusted import PlainLabel


class ProblemCard(QFrame):
    """An error said plainly, with the one button that fixes it."""

    def __init__(self, chat: ChatViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chat = chat
        self.setObjectName("problemCard")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.label = PlainLabel()  # errors quote model output and file names
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.button = QPushButton()
        self.button.clicked.connect(self._on_button)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 10)
        layout.addWidget(self.label, 1)
        layout.addWidget(self.button, 0, Qt.AlignmentFlag.AlignVCenter)
        self.hide()

    def show_problem(self) -> None:
        problem = self.chat.problem
        if problem is None:
            self.hide()
            return
        self.label.setText(problem.text)
        self.button.setText("Reload model" if problem.action == ProblemAction.RELOAD
                            else "Try again")
        self.button.setVisible(problem.action != ProblemAction.NONE)
        self.show()

    def _on_button(self) -> None:
        self.chat.retry()
