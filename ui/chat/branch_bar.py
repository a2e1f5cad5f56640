"""A message's branches: ‹ n/m › between them, "Branch from here", and the way back.

Branches are reply versions one level up (:mod:`app.chat.conversations`): editing and
resending a message, or sending after "Branch from here", starts a new branch beside the
old one, which stays — nothing is deleted. This bar sits in a message's row of actions:
the ‹ n/m › control shows when the message has siblings, "Branch from here" is offered
on every finished message, and "Show the later messages" on the last one when the shown
branch was ended there and its old continuation is hidden.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QToolButton, QWidget

from app.chat.conversations import Message
from ui import theme


class BranchBar(QWidget):
    branch_requested = Signal(int, int)      # message id, branch index
    branch_from_requested = Signal(int)      # message id
    later_requested = Signal(int)            # message id: show what followed it

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message: Message | None = None
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.prev_button = self._button("‹", "The branch before this one", layout)
        self.label = QLabel()
        self.label.setObjectName("statsLabel")
        self.label.setToolTip("Branches: this message as it was edited or branched, each "
                              "with the turns that followed it")
        layout.addWidget(self.label)
        self.next_button = self._button("›", "The branch after this one", layout)
        self.later_button = self._button("", "The messages that followed this one in "
                                         "the branch it was taken from", layout)
        self.branch_button = self._button("Branch from here", "Continue the conversation "
                                          "differently from this message; what follows "
                                          "it now is kept as a branch", layout)
        self.prev_button.clicked.connect(lambda: self._step(-1))
        self.next_button.clicked.connect(lambda: self._step(1))
        self.branch_button.clicked.connect(self._on_branch)
        self.later_button.clicked.connect(self._on_later)

    @staticmethod
    def _button(text: str, tip: str, layout: QHBoxLayout) -> QToolButton:
        button = theme.action_button(text, tip)
        layout.addWidget(button)
        return button

    def show_for(self, message: Message | None, is_last: bool, enabled: bool = True) -> None:
        """Show ``message``'s place among its branches (None: a reply still streaming)."""
        self.message = message
        many = message is not None and message.branch_count > 1
        for widget in (self.prev_button, self.label, self.next_button):
            widget.setVisible(many)
        if many and message is not None:
            self.label.setText(f"branch {message.branch + 1}/{message.branch_count}")
            self.prev_button.setEnabled(enabled and message.branch > 0)
            self.next_button.setEnabled(enabled and message.branch < message.branch_count - 1)
        hidden = message.hidden_after if message is not None else 0
        self.later_button.setText(f"Show the later messages ({hidden} "
                                  f"branch{'es' if hidden != 1 else ''})")
        self.later_button.setVisible(hidden > 0)
        self.later_button.setEnabled(enabled)
        # Branching from the last message would change nothing.
        self.branch_button.setVisible(message is not None and not is_last)
        self.branch_button.setEnabled(enabled)

    def _step(self, delta: int) -> None:
        if self.message is not None:
            self.branch_requested.emit(self.message.id, self.message.branch + delta)

    def _on_branch(self) -> None:
        if self.message is not None:
            self.branch_from_requested.emit(self.message.id)

    def _on_later(self) -> None:
        if self.message is not None:
            self.later_requested.emit(self.message.id)
