"""Finding the passages that answer a query: BM25, vectors, and the two fused.

BM25 (SQLite FTS5) finds the passages that share the query's words, names and numbers;
the vectors find those that say the same thing in other words. Reciprocal-rank fusion
(Cormack et al., 2009: each list gives ``1 / (K + rank)``) joins the two without
calibrating their scores against each other; ``hearth bench docs`` measures each alone
and fused. A :class:`Passage` names its source, page and offsets, which is what a reply
that cites it, or a person checking it, needs.

The query is a stranger's text as much as the documents are: it reaches FTS5 only as
quoted terms, so no query syntax in it is ever obeyed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from app.docs.store import DocumentStore

Mode = Literal["hybrid", "bm25", "vector"]
RRF_K = 60
"""The fusion's constant, as in the paper: ranks past the first few weigh about alike."""
CANDIDATES = 50
"""How deep each list is read before fusing."""


@dataclass(frozen=True)
class Passage:
    collection: str
    source: str
    """The file's path, as it was added."""
    page: int | None
    """1-based page of a PDF; None for formats without pages."""
    char_start: int
    char_end: int
    """``text`` is the file's extracted text from ``char_start`` to ``char_end``."""
    heading: str
    text: str
    """Verbatim from the document: untrusted, show it as plain text."""
    score: float
    chunk_id: int
    ranks: dict[str, int] = field(default_factory=dict)
    """Its 1-based rank in each list that found it ("bm25", "vector")."""
    page_end: int | None = None
    """The page it ends on, where a sentence runs on over a page break; else None."""


_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str:
    """``text``'s words as FTS5 quoted terms joined by OR: nothing in it is syntax."""
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(text)))[:64]
    return " OR ".join(f'"{w}"' for w in words)


class DocumentSearch:
    """Searches a store; ``embed_query`` turns a query into its unit vector (the
    embedding worker's), and is only called for the modes that use vectors."""

    def __init__(self, store: DocumentStore,
                 embed_query: Callable[[str], np.ndarray] | None = None) -> None:
        self.store = store
        self.embed_query = embed_query
        self._matrix_key: tuple[object, ...] | None = None
        self._ids = np.zeros(0, dtype=np.int64)
        self._matrix = np.zeros((0, 0), dtype=np.float32)

    def search(self, query: str, k: int = 5, collections: Sequence[str] | None = None,
               mode: Mode = "hybrid") -> list[Passage]:
        ids = self.store.collection_ids(collections)
        if not ids or not query.strip():
            return []
        lists: dict[str, list[int]] = {}
        if mode in ("hybrid", "bm25"):
            lists["bm25"] = self.bm25_ids(query, ids, CANDIDATES if mode == "hybrid" else k)
        if mode in ("hybrid", "vector"):
            lists["vector"] = self.vector_ids(query, ids,
                                              CANDIDATES if mode == "hybrid" else k)
        scores: dict[int, float] = {}
        ranks: dict[int, dict[str, int]] = {}
        for name, found in lists.items():
            for rank, chunk_id in enumerate(found, start=1):
                scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (RRF_K + rank)
                ranks.setdefault(chunk_id, {})[name] = rank
        best = sorted(scores, key=lambda c: (-scores[c], c))[:k]
        return self._passages(best, scores, ranks)

    def bm25_ids(self, query: str, collections: list[int], limit: int) -> list[int]:
        match = fts_query(query)
        if not match:
            return []
        rows = self._select(
            "SELECT doc_chunks_fts.rowid FROM doc_chunks_fts "
            "JOIN doc_chunks k ON k.id = doc_chunks_fts.rowid "
            "JOIN doc_files f ON f.id = k.file_id WHERE f.collection_id IN ({ids}) "
            "AND doc_chunks_fts MATCH ? ORDER BY bm25(doc_chunks_fts) LIMIT ?",
            collections, match, limit)
        return [int(r[0]) for r in rows]

    def vector_ids(self, query: str, collections: list[int], limit: int) -> list[int]:
        if self.embed_query is None:
            raise ValueError("vector search needs the embedding model")
        ids, matrix = self._vectors(collections)
        if not len(ids):
            return []
        scores = matrix @ self.embed_query(query).astype(np.float32)
        top = np.argpartition(-scores, min(limit, len(ids)) - 1)[:limit]
        order = top[np.argsort(-scores[top], kind="stable")]
        return [int(i) for i in ids[order]]

    def _vectors(self, collections: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """Every passage vector of ``collections`` as one matrix, kept while the tables
        hold the same rows (ids are never reused, so count and max id say so)."""
        where = "FROM doc_chunks k JOIN doc_files f ON f.id = k.file_id " \
                "WHERE f.collection_id IN ({ids})"
        [(count, top)] = self._select(f"SELECT COUNT(*), MAX(k.id) {where}", collections)
        key = (tuple(collections), count, top)
        if key != self._matrix_key:
            rows = self._select(f"SELECT k.id, k.vector {where}", collections)
            self._ids = np.array([r[0] for r in rows], dtype=np.int64)
            self._matrix = (np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
                            .reshape(len(rows), -1) if rows
                            else np.zeros((0, 0), dtype=np.float32))
            self._matrix_key = key
        return self._ids, self._matrix

    def _select(self, sql: str, ids: Sequence[int], *after: object) -> list[Any]:
        """``sql``'s rows, its ``{ids}`` the placeholders of ``ids``, then ``after``'s."""
        marks = ",".join("?" * len(ids))
        return self.store.db.execute(sql.format(ids=marks), (*ids, *after)).fetchall()

    def _passages(self, best: list[int], scores: dict[int, float],
                  ranks: dict[int, dict[str, int]]) -> list[Passage]:
        if not best:
            return []
        rows = self._select(
            "SELECT k.id, c.name, f.path, k.page, k.char_start, k.char_end, k.heading, "
            "k.text, k.page_end FROM doc_chunks k JOIN doc_files f ON f.id = k.file_id "
            "JOIN doc_collections c ON c.id = f.collection_id WHERE k.id IN ({ids})", best)
        by_id = {r[0]: r for r in rows}
        return [Passage(r[1], r[2], r[3], r[4], r[5], r[6], r[7], scores[i], i, ranks[i],
                        r[8]) for i in best if (r := by_id.get(i)) is not None]
