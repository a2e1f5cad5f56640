"""One message in the conversation: its text, its stats line and its actions.

The body is a read-only, frameless :class:`~ui.chat.message_body.MessageBody` whose
height follows its document, so the conversation scrolls as one page; a long message is
several bodies, one per piece.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import (
    QGuiApplication,
    QKeyEvent,
    QTextCursor,
)
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.chat.conversations import CANCELLED, INTERRUPTED, TRUNCATED, Message
from app.docs.citing import stats_note
from app.units import format_token_rate
from ui import theme
from ui.chat.branch_bar import BranchBar
from ui.chat.markdown import MarkdownRenderer, split_pieces, split_points
from ui.chat.message_body import SYNC_RENDER_CHARS, MessageBody
from ui.chat.sources_box import SourcesBox
from ui.chat.tool_card import ToolCards
from ui.status_note import tell
from ui.untrusted import PlainLabel


def stats_line(stats: dict | None) -> str:
    """"142 tokens · 0.21 s to first token · 96.4 tok/s" from a reply's stats."""
    if not stats or "completion_tokens" not in stats:
        return ""
    parts = [f"{stats['completion_tokens']} tokens"]
    if stats.get("ttft_s"):
        parts.append(f"{stats['ttft_s']:.2f} s to first token")
    if stats.get("decode_tps"):
        parts.append(format_token_rate(stats["decode_tps"]))
    return " · ".join(parts)


def producer_note(stats: dict | None) -> str:
    """"by NAME (adapter applied live)": who wrote a reply when base <-> tuned switch."""
    stats = stats or {}
    live = " (adapter applied live)" if stats.get("adapter") else ""
    return f"by {stats['model']}{live}" if stats.get("model") else ""


def author_label(message: Message | None, model_label: str) -> str:
    """Who wrote a message, as its heading says: "You", the model that answers here, or
    for an imported reply where it came from ("gpt-4o (imported from ChatGPT)"): an
    imported reply was not written by the model loaded now. The file's model name is a
    stranger's text: shown plain (the heading is a PlainLabel) and kept short."""
    if message is not None and message.role == "user":
        return "You"
    stats = (message.stats if message is not None else None) or {}
    if "imported_from" not in stats:
        return model_label
    source, named = str(stats["imported_from"] or ""), str(stats.get("imported_model") or "")
    where = f"imported from {source[:40]}" if source else "imported"
    named = "".join(c for c in named if c.isprintable())[:60]
    return f"{named} ({where})" if named else where[:1].upper() + where[1:]


def trimmed_note(dropped: int, n_ctx: int | None = None) -> str:
    if dropped <= 0:
        return ""
    where = f" ({n_ctx} tokens)" if n_ctx else ""
    noun = "message was" if dropped == 1 else "messages were"
    return (f"{dropped} earlier {noun} left out so the conversation fits the "
            f"model's context{where}.")


class MessageWidget(QFrame):
    """A stored message, or the reply being streamed (``message`` is None then)."""

    regenerate_requested = Signal()
    continue_requested = Signal()
    edit_submitted = Signal(int, str)          # message id, new text
    version_requested = Signal(int, int)       # message id, version index
    correct_requested = Signal(int, str)       # message id, the reply as shown

    def __init__(self, message: Message | None, renderer: MarkdownRenderer,
                 model_label: str = "Assistant", is_last: bool = False,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.message = message
        self.renderer = renderer
        self.is_last = is_last
        self.role = message.role if message else "assistant"
        self.streaming = message is None
        self.setObjectName("userMessage" if self.role == "user" else "assistantMessage")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)

        self.model_label = model_label
        self.role_label = PlainLabel(author_label(message, model_label))
        self.role_label.setObjectName("roleLabel")
        self.note = PlainLabel()
        self.note.setObjectName("noteLabel")
        self.note.setWordWrap(True)
        self.note.hide()
        # The text, as one document or (long messages) several pieces: see PIECE_CHARS.
        self.body_box = QWidget()
        self.body_layout = QVBoxLayout(self.body_box)
        self.body_layout.setContentsMargins(0, 0, 0, 0)
        self.body_layout.setSpacing(0)
        self.bodies: list[MessageBody] = []
        self._streamed = ""
        self._add_body()
        self.tool_cards = ToolCards()  # a reply that called tools: a card per call
        self.sources = SourcesBox()  # a reply answered from documents: what it cites
        self.footer = QLabel()
        self.footer.setObjectName("statsLabel")
        self.footer.setWordWrap(True)
        self.footer.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.actions = QHBoxLayout()
        self.actions.setContentsMargins(0, 0, 0, 0)
        self.actions.setSpacing(2)
        self.copy_button = self._action("Copy", "Copy this message", self._on_copy)
        if self.role == "user":
            self.edit_button = self._action("Edit", "Edit this message and send it again",
                                            self._on_edit)
        else:
            self.prev_button = self._action("‹", "Earlier version", self._on_prev)
            self.version_label = QLabel()
            self.version_label.setObjectName("statsLabel")
            self.actions.addWidget(self.version_label)
            self.next_button = self._action("›", "Later version", self._on_next)
            self.regenerate_button = self._action("Regenerate", "Ask for another reply; "
                                                  "this one is kept as a version",
                                                  self.regenerate_requested.emit)
            self.continue_button = self._action("Continue", "Continue this reply where "
                                                "it stopped", self.continue_requested.emit)
            self.correct_button = self._action("Correct this", "Write the reply it should "
                                               "have given: saved as a training example for "
                                               "Fine-tune", self._on_correct)
        self.actions.addStretch(1)
        self.branches = BranchBar()
        self.actions.addWidget(self.branches)

        self.editor: QPlainTextEdit | None = None
        self.needs_render = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 10, 14, 8)
        layout.setSpacing(4)
        layout.addWidget(self.role_label)
        layout.addWidget(self.note)
        layout.addWidget(self.body_box)
        layout.addWidget(self.tool_cards)
        layout.addWidget(self.sources)
        layout.addWidget(self.footer)
        layout.addLayout(self.actions)
        self.refresh(message, is_last)

    def _action(self, text: str, tip: str, slot: object) -> QToolButton:
        button = theme.action_button(text, tip)
        button.clicked.connect(slot)
        self.actions.addWidget(button)
        return button

    # ------------------------------------------------------------------ content

    @property
    def body(self) -> MessageBody:
        """The first (often the only) piece of the text."""
        return self.bodies[0]

    def _add_body(self) -> MessageBody:
        body = MessageBody()
        self.bodies.append(body)
        self.body_layout.addWidget(body)
        return body

    def _set_piece_count(self, n: int) -> None:
        while len(self.bodies) < n:
            self._add_body().show()
        while len(self.bodies) > n:
            body = self.bodies.pop()
            body.setParent(None)
            body.deleteLater()

    def refresh(self, message: Message | None, is_last: bool) -> None:
        """Show ``message``, re-rendering only when its text changed.

        Short text is rendered at once; long text shows as plain text pieces and sets
        ``needs_render`` so the view renders them, a slice per frame.
        """
        changed = (message is None or self.message is None or self.streaming
                   or message.content != self.message.content
                   or self.body.document().isEmpty())
        self.message, self.is_last = message, is_last
        if message is not None:
            self.role_label.setText(author_label(message, self.model_label))
            self.streaming = False
            if changed:
                if len(message.content) <= SYNC_RENDER_CHARS:
                    self._set_piece_count(1)
                    self.body.set_markdown(message.content, self.renderer)
                    self.needs_render = False
                else:
                    pieces = split_pieces(message.content)
                    self._set_piece_count(len(pieces))
                    for body, piece in zip(self.bodies, pieces, strict=True):
                        if body.plain_text != piece:
                            body.set_plain(piece)
                    self.needs_render = True
        self.tool_cards.show_steps(message)
        self.sources.show_sources(message)
        if self.editor is None:  # a reply that is only calls: its cards say it all
            self.body_box.setVisible(message is None or bool(message.content)
                                     or not message.tool_steps)
        self._update_footer()

    def pieces(self) -> list[str]:
        return split_pieces(self.message.content) if self.message else []

    def begin_stream(self, prefix: str = "") -> None:
        """Become the streaming view of a reply (``prefix``: the text being continued)."""
        self.streaming = True
        self._set_piece_count(1)
        self.body.set_plain("")
        self._streamed = ""
        self.append(prefix)
        self._update_footer()

    def append(self, text: str, tokens: int = 0) -> None:
        """Stream ``text`` in at the end, starting a new piece where the text is cut."""
        if not text:
            return
        start = len(self._streamed)
        self._streamed += text
        bounds = [0, *split_points(self._streamed), len(self._streamed)]
        pos = start
        for k in range(len(self.bodies) - 1, len(bounds) - 1):
            if k >= len(self.bodies):
                self._add_body().show()
                self.bodies[k].set_plain("")
            end = bounds[k + 1]
            if end > pos:
                self.bodies[k].append(self._streamed[pos:end])
                pos = end

    def set_stream_status(self, text: str) -> None:
        self.footer.setText(text)
        self.footer.setVisible(bool(text))

    def set_note(self, text: str) -> None:
        self.note.setText(text)
        self.note.setVisible(bool(text))

    def _update_footer(self) -> None:
        self.branches.show_for(None if self.streaming else self.message, self.is_last)
        m = self.message
        if self.role == "user":
            self.footer.hide()
            self.copy_button.setVisible(not self.streaming)
            self.edit_button.setVisible(not self.streaming and self.editor is None)
            return
        stats = m.stats if m else None
        self.set_note(trimmed_note((stats or {}).get("dropped_messages", 0)))
        if self.streaming:
            self.set_stream_status("Generating…")
            for button in (self.copy_button, self.prev_button, self.next_button,
                           self.regenerate_button, self.continue_button, self.version_label,
                           self.correct_button):
                button.hide()
            return
        assert m is not None
        parts = [stats_line(stats)] if stats_line(stats) else []
        status = {CANCELLED: "stopped", TRUNCATED: "cut at the token limit",
                  INTERRUPTED: "interrupted"}.get(m.status)
        if status:
            parts.append(status)
        producer = producer_note(stats)
        parts += [producer] if producer else []
        parts += [note] if (note := stats_note(stats)) else []
        error = (stats or {}).get("error")
        text = " · ".join(parts)
        if error:
            text = _escape(text)
            # The first sentence says what happened; the fix is on the problem card.
            first = error.split(". ", 1)[0].rstrip(".") + "."
            text += f"<br><span style='color:{theme.readable(theme.ERROR)}'>{_escape(first)}</span>"
        self.footer.setTextFormat(Qt.TextFormat.RichText if error else Qt.TextFormat.PlainText)
        self.set_stream_status(text)
        many = m.version_count > 1
        self.version_label.setText(f"{m.version + 1}/{m.version_count}")
        for widget in (self.prev_button, self.next_button, self.version_label):
            widget.setVisible(many)
        self.prev_button.setEnabled(m.version > 0)
        self.next_button.setEnabled(m.version < m.version_count - 1)
        self.copy_button.show()
        self.correct_button.setVisible(bool(m.content.strip() or m.tool_steps))
        self.regenerate_button.setVisible(self.is_last)
        self.continue_button.setVisible(self.is_last and m.status in (TRUNCATED, CANCELLED,
                                                                        INTERRUPTED))

    def set_actions_enabled(self, enabled: bool) -> None:
        """Actions that start a reply are off while another reply is in flight."""
        self.branches.show_for(None if self.streaming else self.message, self.is_last,
                               enabled)
        if self.role == "user":
            self.edit_button.setEnabled(enabled)
        else:
            for button in (self.regenerate_button, self.continue_button):
                button.setEnabled(enabled)
            if self.message is not None:
                self.prev_button.setEnabled(enabled and self.message.version > 0)
                self.next_button.setEnabled(
                    enabled and self.message.version < self.message.version_count - 1)

    def text(self) -> str:
        return self.message.content if self.message else self._streamed

    # ------------------------------------------------------------------- slots

    def _on_copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text())
        # Said where the person looks (the button) and in the status bar.
        self.copy_button.setText("Copied ✓")
        QTimer.singleShot(1500, self.copy_button, lambda: self.copy_button.setText("Copy"))
        tell(self, "Copied the message")

    def _on_correct(self) -> None:
        if self.message is not None:
            self.correct_requested.emit(self.message.id, self.message.content)

    def _on_prev(self) -> None:
        if self.message is not None:
            self.version_requested.emit(self.message.id, self.message.version - 1)

    def _on_next(self) -> None:
        if self.message is not None:
            self.version_requested.emit(self.message.id, self.message.version + 1)

    def _on_edit(self) -> None:
        """Swap the body for an editor with Send / Cancel."""
        if self.message is None or self.editor is not None:
            return
        self.editor = QPlainTextEdit(self.message.content)
        self.editor.setObjectName("editBox")
        lines = max(2, min(10, self.message.content.count("\n") + 2))
        self.editor.setFixedHeight(lines * self.fontMetrics().lineSpacing() + 16)
        send = QPushButton("Send")
        send.setDefault(True)
        cancel = QPushButton("Cancel")
        row = QHBoxLayout()
        hint = QLabel("Enter sends · Shift+Enter new line · Esc cancels")
        hint.setObjectName("statsLabel")
        hint.setWordWrap(True)  # wraps in a narrow chat rather than widening the message
        row.addWidget(hint, 1)
        row.addWidget(cancel)
        row.addWidget(send)
        self._edit_box = QWidget()
        box_layout = QVBoxLayout(self._edit_box)
        box_layout.setContentsMargins(0, 0, 0, 0)
        box_layout.addWidget(self.editor)
        box_layout.addLayout(row)
        layout = self.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(layout.indexOf(self.body_box), self._edit_box)
        self.body_box.hide()
        send.clicked.connect(self._on_edit_send)
        cancel.clicked.connect(self._on_edit_cancel)
        send.setToolTip("Send the edited message (Enter; Shift+Enter starts a new line)")
        cancel.setToolTip("Leave it as it was (Esc)")
        self.editor.installEventFilter(self)
        self.editor.setFocus()
        self.editor.moveCursor(QTextCursor.MoveOperation.End)
        self._update_footer()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """The editor's keys, as in the composer: Enter sends, Shift+Enter is a new line,
        Esc cancels. Esc is claimed before the window's own Esc (Stop) can take it."""
        if watched is not self.editor or event.type() not in (
                QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride):
            return super().eventFilter(watched, event)
        assert isinstance(event, QKeyEvent)
        plain = not event.modifiers() & (Qt.KeyboardModifier.ShiftModifier
                                         | Qt.KeyboardModifier.AltModifier)
        ours = event.key() == Qt.Key.Key_Escape or (
            plain and event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter))
        if not ours:
            return super().eventFilter(watched, event)
        event.accept()
        if event.type() == QEvent.Type.KeyPress:
            if event.key() == Qt.Key.Key_Escape:
                self._on_edit_cancel()
            else:
                self._on_edit_send()
        return True

    def _on_edit_send(self) -> None:
        if self.editor is None or self.message is None:
            return
        text = self.editor.toPlainText().strip()
        if text:
            self.edit_submitted.emit(self.message.id, text)
        self._on_edit_cancel()

    def _on_edit_cancel(self) -> None:
        if self.editor is None:
            return
        self._edit_box.deleteLater()
        self.editor = None
        self.body_box.show()
        self._update_footer()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
