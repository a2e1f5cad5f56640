"""A home's collections as the chat and the server search them: the store, and one
embedding worker started on the first search that needs it (not with the window or the
server, which may never be asked) and stopped with its owner.

Searches may come from several threads (the window's chat and an add in the Documents
room, the server's connection threads); the :class:`~app.docs.embedder.Embedder` takes
them in turn.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from app.docs.embedder import Embedder
from app.docs.search import DocumentSearch, Passage
from app.docs.store import DocumentStore


class Shelf:
    def __init__(self, store: DocumentStore, embedder: Callable[[], Embedder]) -> None:
        """``embedder`` makes the worker's client; it is called at most once."""
        self.store = store
        self._make = embedder
        self._embedder: Embedder | None = None
        self._lock = threading.Lock()

    def embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                self._embedder = self._make()
            return self._embedder

    def search(self, query: str, k: int, collections: Sequence[str] | None
               ) -> list[Passage]:
        """Hybrid search (slow on its first call: the worker starts): off the GUI thread."""
        return DocumentSearch(self.store, self.embedder().embed_query).search(
            query, k, collections)

    def known(self) -> set[str]:
        return {c.name for c in self.store.collections()}

    def close(self) -> None:
        with self._lock:
            if self._embedder is not None:
                self._embedder.close()
                self._embedder = None
