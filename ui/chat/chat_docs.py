"""The chat's side of documents: which collections a conversation answers from, and the
search before each reply, run off the GUI thread.

:class:`ChatDocs` belongs to the :class:`~ui.chat.chat_view_model.ChatViewModel`. A
conversation's choice lives in its settings (:class:`app.docs.citing.DocChoice`, like
its tools). Searching embeds the question in the embedding worker, which starts on the
first search (seconds), so the view model holds the reply, as it does while tool servers
start, and asks for it once :meth:`search` has the passages; the session then grounds the
question with them (:mod:`app.docs.citing`) on the GUI thread, which is quick.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal

from app.docs.citing import PASSAGES_K, DocChoice, Retriever
from app.docs.search import Passage
from app.docs.shelf import Shelf
from ui.background import Background

if TYPE_CHECKING:
    from ui.chat.chat_view_model import ChatViewModel


class ChatDocs(QObject):
    choice_changed = Signal(int)  # conversation id

    def __init__(self, chat: ChatViewModel, shelf: Shelf) -> None:
        super().__init__(chat)
        self.chat = chat
        self.shelf = shelf
        self.background = Background(self)
        self._found: dict[tuple[str, tuple[str, ...]], list[Passage]] = {}

    def choice(self, conversation_id: int) -> DocChoice:
        return DocChoice.of(self.chat.store.get(conversation_id).settings)

    def set_choice(self, conversation_id: int, choice: DocChoice) -> None:
        settings = self.chat.store.get(conversation_id).settings
        self.chat.store.update(conversation_id, settings=choice.stored(settings))
        self.choice_changed.emit(conversation_id)

    def collections(self) -> list[str]:
        return [c.name for c in self.shelf.store.collections()]

    def must_search(self, conversation_id: int, question: str | None) -> bool:
        """The conversation answers from documents and ``question``'s passages are not
        found yet."""
        choice = self.choice(conversation_id)
        return (question is not None and choice.on
                and (question, choice.collections) not in self._found)

    def search(self, conversation_id: int, question: str, then: Callable[[], None],
               failed: Callable[[BaseException], None]) -> None:
        """Find ``question``'s passages off the GUI thread, then call ``then()``."""
        names = self.choice(conversation_id).collections

        def found(passages: list[Passage]) -> None:
            self._found[(question, names)] = passages
            then()

        self.background.run(lambda: self.shelf.search(question, PASSAGES_K, list(names)),
                            found, failed, name="hearth-doc-search")

    def offer(self, conversation_id: int) -> None:
        """Set what the session grounds the next request with: this conversation's
        collections, answered from the passages :meth:`search` found."""
        choice = self.choice(conversation_id)
        self.chat.session.documents = (Retriever(self._passages, choice.collections)
                                       if choice.on else None)

    def _passages(self, question: str, _k: int, collections: list[str]) -> list[Passage]:
        return self._found.pop((question, tuple(collections)), [])

    def shutdown(self) -> None:
        self.background.shutdown()
        self.shelf.close()
