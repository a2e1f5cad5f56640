"""The open conversation as one scrolling page of messages.

It renders the :class:`~ui.chat.chat_view_model.ChatViewModel`: :meth:`ConversationView.sync`
compares the stored messages with the widgets on the page and only builds or re-renders
what changed, so finishing a reply or flipping a version re-renders one message, not
fifty. The reply in flight is a plain-text widget at the bottom that receives the
model's coalesced chunks. While the page is scrolled to the bottom it stays there as
text arrives; scrolled up, it stays where the person is reading.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from app.chat.conversations import Message
from app.chat.turn import PendingReply
from app.models.curated import starter_note
from app.models.library import UnknownModel
from ui.chat.chat_view_model import ChatViewModel
from ui.chat.conversation_style import conversation_style_sheet
from ui.chat.markdown import MarkdownRenderer, warm_up
from ui.chat.message_body import SYNC_RENDER_CHARS, MessageBody
from ui.chat.message_widget import MessageWidget, trimmed_note
from ui.chat.problem_card import ProblemCard
from ui.chat.render_queue import RenderQueue
from ui.untrusted import PlainLabel

COLUMN_WIDTH = 860
# Messages built at once when a conversation opens; older ones follow a frame apart.
SYNC_BUILD = 3


class ConversationView(QScrollArea):
    # "Correct this" on a reply: message id and its text; the window opens the dialog.
    correct_requested = Signal(int, str)

    def __init__(self, chat: ChatViewModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.chat = chat
        self.renderer = MarkdownRenderer(self.palette())
        self._warm_up = warm_up()
        # PySide6 builds its Python enum types on first use (~80 ms for those a message
        # touches): pay that while the window is built, not when a conversation opens.
        MessageBody().set_markdown("`x` **y**\n\n```text\nz\n```", self.renderer)
        self.render_queue = RenderQueue(self)
        self._to_build: list[Message] = []
        self._order: list[int] = []
        self._build_timer = QTimer(self, interval=0)
        self._build_timer.timeout.connect(self._on_build_tick)
        self.widgets: dict[int, MessageWidget] = {}
        self.stream_widget: MessageWidget | None = None
        self.stream_request: str | None = None
        self._stick = True
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        page = QWidget()
        page.setObjectName("conversationPage")
        # An opaque page lets Qt scroll by moving pixels instead of repainting it all.
        page.setAutoFillBackground(True)
        page.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent, False)
        self.page = page
        outer = QHBoxLayout(page)
        outer.setContentsMargins(16, 16, 16, 16)
        self.column = QWidget()
        self.column.setMaximumWidth(COLUMN_WIDTH)
        outer.addStretch(1)
        outer.addWidget(self.column, 100)
        outer.addStretch(1)
        self.list_layout = QVBoxLayout(self.column)
        self.list_layout.setContentsMargins(0, 0, 0, 0)
        self.list_layout.setSpacing(10)
        self.empty = PlainLabel()
        self.empty.setObjectName("emptyState")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.problem_card = ProblemCard(chat)
        self.list_layout.addWidget(self.empty)
        self.list_layout.addWidget(self.problem_card)
        self.list_layout.addStretch(1)
        self.setWidget(page)
        self._restyle()

        bar = self.verticalScrollBar()
        bar.valueChanged.connect(self._on_scrolled)
        bar.rangeChanged.connect(self._on_range_changed)
        chat.conversation_opened.connect(self._on_conversation_opened)
        chat.messages_changed.connect(self._on_messages_changed)
        chat.reply_started.connect(self._on_reply_started)
        chat.reply_chunk.connect(self._on_reply_chunk)
        chat.context_trimmed.connect(self._on_context_trimmed)
        chat.reply_finished.connect(self._on_reply_finished)
        chat.reply_stopping.connect(self._on_reply_stopping)
        chat.problem_changed.connect(self.problem_card.show_problem)
        chat.model_state_changed.connect(self._on_model_state_changed)
        chat.tools.steps_changed.connect(self._on_steps_changed)
        self.sync()

    # ------------------------------------------------------------------ building

    def sync(self) -> None:
        """Make the page match the store and the reply in flight."""
        messages = self.chat.messages()
        reply = self._reply_here()
        hidden = set()
        if reply is not None:
            for message in (reply.replaces, reply.continues):
                if message is not None:
                    hidden.add(message.id)
        shown = [m for m in messages if m.id not in hidden]
        keep = {m.id for m in shown}
        for message_id in list(self.widgets):
            if message_id not in keep:
                widget = self.widgets.pop(message_id)
                self.render_queue.cancel(widget)
                widget.setParent(None)
                widget.deleteLater()
        last_assistant = next((m.id for m in reversed(shown) if m.role == "assistant"), None)
        is_tail = reply is None
        label = self._model_label()
        missing = [m.id for m in shown if m.id not in self.widgets]
        # The newest messages are built now; older ones a few per frame (_on_build_tick).
        later = set(missing[:-SYNC_BUILD]) if len(missing) > SYNC_BUILD else set()
        built = []
        for index, message in enumerate(shown):
            if message.id in later:
                continue
            last = is_tail and message.id == last_assistant and index == len(shown) - 1
            widget = self.widgets.get(message.id)
            if widget is None:
                widget = self._make(message, label, last)
                self.widgets[message.id] = widget
            else:
                widget.refresh(message, last)
            widget.set_actions_enabled(self.chat.can_send)
            widget.tool_cards.set_running(self.chat.tools.running(message.id))
            built.append(widget)
        self._place(built)
        # Queued oldest first, so the newest (inserted at the front) renders first.
        for widget in built:
            if widget.needs_render:
                self.render_queue.add(widget, self.renderer)
        self._to_build = [m for m in shown if m.id in later]
        self._order = [m.id for m in shown]
        if self._to_build:
            self._build_timer.start()
        self._sync_stream(reply, len(built))
        self._update_empty()
        self.problem_card.show_problem()

    def _place(self, ordered: list[MessageWidget]) -> None:
        """Put the built message widgets in conversation order at the top of the list."""
        for index, widget in enumerate(ordered):
            if self.list_layout.indexOf(widget) != index:
                self.list_layout.insertWidget(index, widget)
                widget.show()  # now, not on the layout's queued show

    def _on_build_tick(self) -> None:
        """Build one older message (newest of those left) per frame, above the others.

        It waits while the render queue works, so a frame never holds both a build and
        a piece's layout."""
        if not self._to_build:
            self._build_timer.stop()
            return
        if self.render_queue.jobs:
            return
        message = self._to_build.pop()
        if message.id not in self.widgets:
            widget = self._make(message, self._model_label(), False)
            widget.set_actions_enabled(self.chat.can_send)
            widget.tool_cards.set_running(self.chat.tools.running(message.id))
            self.widgets[message.id] = widget
            order = self._order
            built = sorted((w for w in self.widgets.values() if w.message is not None),
                           key=lambda w: order.index(w.message.id)
                           if w.message and w.message.id in order else len(order))
            self._place(built)
            if widget.needs_render:
                self.render_queue.add(widget, self.renderer)
                # Behind the newer ones: what is on screen renders first.
                mine = [j for j in self.render_queue.jobs if j[0] is widget]
                self.render_queue.cancel(widget)
                self.render_queue.jobs.extend(mine)

    def _make(self, message: Message | None, label: str, last: bool) -> MessageWidget:
        widget = MessageWidget(message, self.renderer, label, last)
        widget.regenerate_requested.connect(self._on_regenerate)
        widget.continue_requested.connect(self._on_continue)
        widget.edit_submitted.connect(self._on_edit_submitted)
        widget.version_requested.connect(self._on_version_requested)
        widget.branches.branch_requested.connect(self.chat.select_branch)
        widget.branches.branch_from_requested.connect(self.chat.branch_from)
        widget.branches.later_requested.connect(self.chat.show_later)
        widget.tool_cards.decided.connect(self.chat.tools.decide)
        widget.tool_cards.stop_requested.connect(self.chat.tools.stop_call)
        if widget.role == "assistant":
            widget.correct_requested.connect(self.correct_requested)
        return widget

    def _sync_stream(self, reply: PendingReply | None, index: int) -> None:
        stale = reply is None or reply.request_id != self.stream_request
        if stale and self.stream_widget is not None:
            self.stream_widget.setParent(None)
            self.stream_widget.deleteLater()
            self.stream_widget, self.stream_request = None, None
        if reply is None or self.stream_widget is not None:
            return
        widget = self._make(None, self._model_label(), False)
        prefix = reply.continues.content if reply.continues else ""
        widget.begin_stream(prefix + reply.text)
        if not reply.request_id:  # asked for once the tools run or the search is done
            widget.set_stream_status(self.chat.waiting)
        if self.chat.stopping:
            widget.set_stream_status("Stopping…")
        widget.set_note(trimmed_note(reply.dropped_messages))
        self.stream_widget, self.stream_request = widget, reply.request_id
        self.list_layout.insertWidget(index, widget)
        widget.show()
        self._stick = True

    def _reply_here(self) -> PendingReply | None:
        reply = self.chat.reply
        if reply is not None and reply.conversation_id == self.chat.conversation_id:
            return reply
        return None

    def _model_label(self) -> str:
        conversation = self.chat.conversation
        return (conversation.model if conversation and conversation.model
                else self.chat.model_name or "Assistant")

    def _is_starter(self, name: str) -> bool:
        try:
            return self.chat.workspace.library.get(name).source == "starter"
        except UnknownModel:
            return False

    def _update_empty(self) -> None:
        empty = not self.widgets and self.stream_widget is None
        if empty:
            if self.chat.model_name is None:
                text = ("No model yet.\nAdd one in the Models tab, then come back to chat.")
            else:
                text = (f"Chat with {self.chat.model_name}\n\nAsk anything. Enter sends, "
                        "Shift+Enter starts a new line.\nEverything stays on this computer.")
                if self._is_starter(self.chat.model_name):
                    text += "\n\n" + starter_note()
            self.empty.setText(text)
        self.empty.setVisible(empty)

    def _restyle(self) -> None:
        palette = self.palette()
        if hasattr(self, "page"):
            page_palette = self.page.palette()
            page_palette.setColor(QPalette.ColorRole.Window,
                                  palette.color(QPalette.ColorRole.Base))
            self.page.setPalette(page_palette)
        self.setStyleSheet(conversation_style_sheet(palette))

    def changeEvent(self, event: QEvent) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange:
            self._restyle()
            self.renderer = MarkdownRenderer(self.palette())
            self.render_queue.clear()
            for widget in self.widgets.values():
                widget.renderer = self.renderer
                if widget.message is None:
                    continue
                if len(widget.message.content) <= SYNC_RENDER_CHARS:
                    widget.body.set_markdown(widget.message.content, self.renderer)
                else:
                    self.render_queue.add(widget, self.renderer)

    # -------------------------------------------------------------------- slots

    def _on_conversation_opened(self, conversation_id: int) -> None:
        self.render_queue.clear()
        self._to_build.clear()
        for widget in self.widgets.values():
            widget.setParent(None)
            widget.deleteLater()
        self.widgets.clear()
        if self.stream_widget is not None:
            self.stream_widget.setParent(None)
            self.stream_widget.deleteLater()
            self.stream_widget, self.stream_request = None, None
        self._stick = True
        self.sync()
        QTimer.singleShot(0, self, self.scroll_to_bottom)  # dropped if the view is gone

    def _on_model_state_changed(self) -> None:
        """Regenerate, Continue and Edit need a loaded, idle model."""
        for widget in self.widgets.values():
            widget.set_actions_enabled(self.chat.can_send)
        self._update_empty()

    def _on_messages_changed(self, conversation_id: int) -> None:
        if conversation_id == self.chat.conversation_id:
            self.sync()
        else:
            self._on_model_state_changed()

    def _on_steps_changed(self, message_id: int) -> None:
        """A call started or stopped running (its outcome comes with messages_changed);
        while one runs the reply is under way, so Regenerate, Continue and Edit wait."""
        widget = self.widgets.get(message_id)
        if widget is not None:
            widget.tool_cards.set_running(self.chat.tools.running(message_id))
        self._on_model_state_changed()

    def _on_reply_started(self, reply: PendingReply) -> None:
        if reply.conversation_id == self.chat.conversation_id:
            self.sync()
            self.scroll_to_bottom()

    def _on_reply_chunk(self, request_id: str, text: str, tokens: int) -> None:
        if self.stream_widget is not None and request_id == self.stream_request:
            self.stream_widget.append(text)
            self.stream_widget.set_stream_status(
                "Stopping…" if self.chat.stopping
                else f"Generating… {self.chat.reply_tokens} tokens")

    def _on_reply_stopping(self, reply: PendingReply) -> None:
        if self.stream_widget is not None and reply.request_id == self.stream_request:
            self.stream_widget.set_stream_status("Stopping…")

    def _on_context_trimmed(self, request_id: str, dropped: int, n_ctx: int) -> None:
        if self.stream_widget is not None and request_id == self.stream_request:
            self.stream_widget.set_note(trimmed_note(dropped, n_ctx))

    def _on_reply_finished(self, reply: PendingReply) -> None:
        if reply.conversation_id == self.chat.conversation_id:
            self._keep_streamed_text(reply)
            self.sync()
        else:
            self._on_model_state_changed()

    def _keep_streamed_text(self, reply: PendingReply) -> None:
        """The streaming widget becomes the stored message's widget: its plain text is
        already laid out, and the Markdown render replaces it a slice at a time."""
        widget = self.stream_widget
        if widget is None or reply.request_id != self.stream_request or reply.saved is None:
            return
        old = self.widgets.pop(reply.saved.id, None)
        if old is not None:
            self.render_queue.cancel(old)
            old.setParent(None)
            old.deleteLater()
        self.widgets[reply.saved.id] = widget
        widget.refresh(reply.saved, True)
        self.stream_widget, self.stream_request = None, None

    def _on_regenerate(self) -> None:
        self.chat.regenerate()

    def _on_continue(self) -> None:
        self.chat.continue_reply()

    def _on_edit_submitted(self, message_id: int, text: str) -> None:
        self.chat.edit_and_resend(message_id, text)

    def _on_version_requested(self, message_id: int, index: int) -> None:
        self.chat.select_version(message_id, index)

    def shutdown(self) -> None:
        """Stop background work (the window is closing); leaves no thread behind."""
        self.render_queue.clear()
        self._build_timer.stop()
        self._warm_up.join(timeout=10)

    # ---------------------------------------------------------------- scrolling

    def scroll_to_bottom(self) -> None:
        bar = self.verticalScrollBar()
        bar.setValue(bar.maximum())
        self._stick = True

    def _on_scrolled(self, value: int) -> None:
        self._stick = value >= self.verticalScrollBar().maximum() - 40

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._stick:
            self.verticalScrollBar().setValue(maximum)
