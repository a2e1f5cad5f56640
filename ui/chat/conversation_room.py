"""The chat room's conversations: which one is open, and the person's changes to them.

:class:`ConversationRoom` is the base of :class:`~ui.chat.chat_view_model.ChatViewModel`
and holds what needs no model: the open conversation, the list's edits (a new one, a
title, a system prompt, an export) and which version or branch of a message is shown.
The subclass adds the reply flow, and with it the one rule that reaches in here: what the
model of a reply in flight sees must not change under it, so the subclass may refuse a
change of the shown versions (:meth:`ConversationRoom._change_shown`) and drops the reply
of a conversation it deletes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from app.chat.conversations import Conversation, ConversationStore, Message, UnknownConversation
from app.chat.export import write_export
from app.chat.turn import DEFAULT_TITLE


class ConversationRoom(QObject):
    conversations_changed = Signal()
    conversation_opened = Signal(int)          # id, or -1 when none is open
    messages_changed = Signal(int)             # a conversation's stored messages changed

    model_name: str | None
    """The model a new conversation records first (the subclass's chosen model)."""

    def __init__(self, store: ConversationStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.conversation_id: int | None = None

    @property
    def conversation(self) -> Conversation | None:
        if self.conversation_id is None:
            return None
        try:
            return self.store.get(self.conversation_id)
        except UnknownConversation:
            return None

    def messages(self) -> list[Message]:
        return self.store.messages(self.conversation_id) if self.conversation_id else []

    def new_conversation(self) -> int:
        """Open a fresh conversation, reusing the open one if it is still empty."""
        current = self.conversation
        if current is not None and not self.messages() and current.title == DEFAULT_TITLE:
            return current.id
        conversation = self.store.create(model=self.model_name)
        self.conversations_changed.emit()
        self.open_conversation(conversation.id)
        return conversation.id

    def open_conversation(self, conversation_id: int | None) -> None:
        if conversation_id is not None:
            try:
                self.store.get(conversation_id)
            except UnknownConversation:
                conversation_id = None
        if conversation_id == self.conversation_id:
            return
        self.conversation_id = conversation_id
        self.conversation_opened.emit(-1 if conversation_id is None else conversation_id)

    def rename(self, conversation_id: int, title: str) -> None:
        title = " ".join(title.split())
        if title:
            self.store.update(conversation_id, title=title)
            self.conversations_changed.emit()

    def delete(self, conversation_id: int) -> None:
        self.store.delete(conversation_id)
        if conversation_id == self.conversation_id:
            remaining = self.store.list()
            self.conversation_id = None
            self.open_conversation(remaining[0].id if remaining else None)
            if self.conversation_id is None:
                self.conversation_opened.emit(-1)
        self.conversations_changed.emit()

    def set_system_prompt(self, text: str) -> None:
        conversation = self.conversation
        if conversation is not None and conversation.system_prompt != text:
            self.store.update(conversation.id, system_prompt=text)

    def export(self, conversation_id: int, path: str | Path) -> Path:
        return write_export(path, self.store.get(conversation_id),
                            self.store.messages(conversation_id))

    # ------------------------------------------------- versions and branches

    def select_version(self, message_id: int, index: int) -> None:
        self._change_shown(lambda: self.store.select_version(message_id, index))

    def select_branch(self, message_id: int, index: int) -> None:
        """Show another branch beside ``message_id`` (what the model sees follows it)."""
        self._change_shown(lambda: self.store.select_branch(message_id, index))

    def branch_from(self, message_id: int) -> None:
        """End the shown branch at ``message_id``: the next message starts a new one."""
        self._change_shown(lambda: self.store.branch_from(message_id))

    def show_later(self, message_id: int) -> None:
        self._change_shown(lambda: self.store.show_later(message_id))

    def _change_shown(self, change: Callable[[], object]) -> None:
        """Change which messages the open conversation shows (and its model sees)."""
        change()
        if self.conversation_id is not None:
            self.messages_changed.emit(self.conversation_id)
