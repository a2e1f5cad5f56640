"""A tool call in the conversation: which tool, from which server, with what arguments,
what the person decided, and what came back.

Everything on a card is a stranger's text: the arguments were written by the model, the
tool and server names and the result by an MCP server. So every part is shown plain
(:class:`~ui.untrusted.PlainLabel`, a read-only :class:`QPlainTextEdit`), never as
markup, and a long result shows its first :data:`RESULT_SHOWN` characters until the
person asks for all of it (at most the 20,000 the client keeps).

A pending call asks: Allow once, Always for this tool (this conversation), or Deny; a
running one offers Stop. The card only says what the person chose
(:attr:`ToolCards.decided`, :attr:`ToolCards.stop_requested`); running and stopping it
belong to :class:`~ui.chat.chat_tools.ChatTools`.
"""

from __future__ import annotations

import json

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontDatabase, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.conversations import Message
from app.chat.tool_steps import StepState, ToolStep
from ui import theme
from ui.untrusted import PlainLabel

RESULT_SHOWN = 1_500
"""Characters of a result shown before "Show all"."""
ARGUMENTS_SHOWN = 2_000
RESULT_LINES = 8
"""The result box's height in lines; longer text scrolls inside it."""
STATE_WORDS = {StepState.PENDING: "Asks to run", StepState.RAN: "Done",
               StepState.FAILED: "Failed", StepState.DENIED: "Denied",
               StepState.STOPPED: "Stopped"}
STATE_COLOURS = {StepState.PENDING: theme.PENDING, StepState.RAN: theme.SUCCESS,
                 StepState.FAILED: theme.ERROR, StepState.DENIED: theme.MUTED,
                 StepState.STOPPED: theme.MUTED}
NOTES = {StepState.DENIED: "Not run: you denied it. The model was told.",
         StepState.FAILED: "The model was told it failed, and goes on.",
         StepState.STOPPED: "Stopped by you before it finished. The model is told it "
                            "was stopped."}


def shown_arguments(arguments: str) -> str:
    """The call's arguments, laid out when they are JSON, cut when very long."""
    try:
        text = json.dumps(json.loads(arguments or "{}"), indent=1, ensure_ascii=False)
    except ValueError:
        text = arguments
    if len(text) > ARGUMENTS_SHOWN:
        text = text[:ARGUMENTS_SHOWN] + f"\n[… {len(text) - ARGUMENTS_SHOWN:,} more characters]"
    return text


class ToolCard(QFrame):
    """One call of a reply."""

    decided = Signal(int, str)  # the step's index, "once" / "always" / "deny"
    stop_requested = Signal(int)  # the step's index: stop it while it runs

    def __init__(self, index: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.setObjectName("toolCard")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self._shown: tuple[object, ...] | None = None
        self._whole = False
        self.title = PlainLabel()
        self.title.setObjectName("toolTitle")
        self.title.setWordWrap(True)
        self.state = PlainLabel()
        self.state.setObjectName("toolState")
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.title, 1)
        top.addWidget(self.state, 0, Qt.AlignmentFlag.AlignTop)
        mono = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        self.arguments = PlainLabel()
        self.arguments.setFont(mono)
        self.arguments.setWordWrap(True)
        self.arguments.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QWidget()
        row = QHBoxLayout(self.buttons)
        row.setContentsMargins(0, 2, 0, 0)
        self.allow_once = QPushButton("Allow once")
        self.allow_always = QPushButton("Always for this tool")
        self.allow_always.setToolTip("Run this tool's calls without asking, in this "
                                     "conversation, until Hearth closes")
        self.deny = QPushButton("Deny")
        self.deny.setToolTip("Do not run it; the model is told and goes on without it")
        for button, answer in ((self.allow_once, "once"), (self.allow_always, "always"),
                               (self.deny, "deny")):
            button.clicked.connect(lambda _c=False, a=answer: self.decided.emit(self.index, a))
            row.addWidget(button)
        self.stop = QPushButton("Stop")
        self.stop.setToolTip("Stop this call now; the model is told it was stopped")
        self.stop.clicked.connect(lambda: self.stop_requested.emit(self.index))
        row.addWidget(self.stop)
        row.addStretch(1)
        self.note = PlainLabel()
        self.note.setObjectName("statsLabel")
        self.note.setWordWrap(True)
        self.result = QPlainTextEdit()  # plain text only: a result may hold any markup
        self.result.setReadOnly(True)
        self.result.setFont(mono)
        self.show_all = QPushButton()
        self.show_all.setFlat(True)
        self.show_all.clicked.connect(self._on_show_all)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 8, 12, 8)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addWidget(self.arguments)
        layout.addWidget(self.buttons)
        layout.addWidget(self.note)
        layout.addWidget(self.result)
        layout.addWidget(self.show_all, 0, Qt.AlignmentFlag.AlignLeft)

    def show_step(self, step: ToolStep, running: bool) -> None:
        shown = (step.call, step.state, step.result, step.server, running)
        if shown == self._shown:
            return  # the person may be reading (or scrolled) the result: leave it be
        self._shown = shown
        where = f"  ·  from {step.server}" if step.server else ""
        self.title.setText(f"Tool call: {step.call.name}{where}")
        self.state.setText("Running…" if running else STATE_WORDS[step.state])
        colour = theme.MUTED if running else STATE_COLOURS[step.state]
        self.state.setStyleSheet(f"color: {theme.readable(colour, self.palette())};"
                                 " font-weight: 600;")
        self.arguments.setText(shown_arguments(step.call.arguments))
        asking = step.state is StepState.PENDING and not running
        for button in (self.allow_once, self.allow_always, self.deny):
            button.setVisible(asking)
        self.stop.setVisible(running)
        self.buttons.setVisible(asking or running)
        self.note.setText("Running it; a call may take up to a minute." if running
                          else NOTES.get(step.state, ""))
        self.note.setVisible(bool(self.note.text()))
        has_result = step.state in (StepState.RAN, StepState.FAILED)
        self.result.setVisible(has_result)
        self._whole = False
        self._show_result(step.result if has_result else "")

    def _show_result(self, text: str) -> None:
        long = len(text) > RESULT_SHOWN
        self._text = text
        self.result.setPlainText(text if self._whole or not long
                                 else text[:RESULT_SHOWN] + " […]")
        self._fit_result()
        self.show_all.setVisible(long)
        self.show_all.setText("Show less" if self._whole
                              else f"Show all ({len(text):,} characters)")

    def _fit_result(self) -> None:
        """As tall as the result's wrapped lines, up to RESULT_LINES (then it scrolls).
        A plain text document's layout counts its height in lines."""
        lines = self.result.document().documentLayout().documentSize().height()
        lines = min(RESULT_LINES, max(1, int(lines)))
        self.result.setFixedHeight(lines * self.result.fontMetrics().lineSpacing() + 14)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_result()  # a narrower card wraps the result onto more lines

    def _on_show_all(self) -> None:
        self._whole = not self._whole
        self._show_result(self._text)


class ToolCards(QWidget):
    """The cards of one reply's calls, in order."""

    decided = Signal(int, int, str)  # message id, step index, answer
    stop_requested = Signal(int, int)  # message id, step index

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message_id: int | None = None
        self.cards: list[ToolCard] = []
        self._steps: list[ToolStep] = []
        self._running: set[int] = set()
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(6)
        self.hide()

    def show_steps(self, message: Message | None) -> None:
        """Show ``message``'s calls (none: the cards go)."""
        self.message_id = message.id if message is not None else None
        self._steps = list(message.tool_steps) if message is not None else []
        while len(self.cards) < len(self._steps):
            card = ToolCard(len(self.cards))
            card.decided.connect(self._on_decided)
            card.stop_requested.connect(self._on_stop_requested)
            self.cards.append(card)
            self._layout.addWidget(card)
        while len(self.cards) > len(self._steps):
            card = self.cards.pop()
            card.setParent(None)
            card.deleteLater()
        self._update()

    def set_running(self, indexes: set[int]) -> None:
        if indexes != self._running:
            self._running = set(indexes)
            self._update()

    def _update(self) -> None:
        for card, step in zip(self.cards, self._steps, strict=True):
            card.show_step(step, card.index in self._running)
        self.setVisible(bool(self.cards))

    def _on_decided(self, index: int, answer: str) -> None:
        if self.message_id is not None:
            self.decided.emit(self.message_id, index, answer)

    def _on_stop_requested(self, index: int) -> None:
        if self.message_id is not None:
            self.stop_requested.emit(self.message_id, index)
