"""Collections, their files and passages in ``hearth.db``: what was indexed, and from what.

A file is replaced in one transaction (its old passages out, the new ones in), so an
add that is cancelled or fails part-way leaves every file either as it was or as it
now is, never half of each. A file is known by its path in its collection and named by
the SHA-256 of the bytes indexed and the embedding model that read them: the same two
again mean nothing to do.

The vectors are float32 blobs beside the text, searched by brute force in numpy
(:mod:`app.docs.search`): ``sqlite-vec`` cannot load here, because Python's ``sqlite3``
is often built without extension loading (this machine's is), and brute force over
100,000 passages of 384 numbers takes milliseconds (BENCHMARKS.md).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath

import numpy as np

from app.db import Database
from app.docs.chunking import Chunk
from app.errors import BadInput

DEFAULT_COLLECTION = "default"


@dataclass(frozen=True)
class FileRecord:
    collection: str
    path: str
    kind: str
    sha256: str
    size: int
    pages: int | None
    embedder: str
    chunks: int
    notes: list[str]
    added_at: str


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    files: int
    chunks: int
    bytes: int
    created_at: str


def where(source: str, page: int | None, page_end: int | None = None) -> str:
    """"manual.pdf, page 3" (pages 3-4 over a break; the file alone without pages): how
    a passage's place is told, in citations and in drafted questions alike."""
    name = PurePath(source).name or source
    if page is None:
        return name
    if page_end is not None and page_end != page:
        return f"{name}, pages {page}-{page_end}"
    return f"{name}, page {page}"


@dataclass(frozen=True)
class StoredPassage:
    """A passage as drafting reads it, in its file's order."""

    id: int
    source: str
    page: int | None
    page_end: int | None
    heading: str
    text: str

    @property
    def where(self) -> str:
        return where(self.source, self.page, self.page_end)


@dataclass(frozen=True)
class Question:
    """A question about a document and what a right answer says (drafted and held out
    of training, or written for the benchmark)."""

    question: str
    answer: str
    source: str = ""
    """Where in the document the answer is ("kiln.md, page 2")."""


class DocumentStore:
    """The document tables of one open ``hearth.db``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # ---------------------------------------------------------------- reading

    def collections(self) -> list[CollectionInfo]:
        rows = self.db.execute(
            "SELECT c.name, c.created_at, COUNT(f.id), COALESCE(SUM(f.size), 0), "
            "COALESCE(SUM((SELECT COUNT(*) FROM doc_chunks k WHERE k.file_id = f.id)), 0) "
            "FROM doc_collections c LEFT JOIN doc_files f ON f.collection_id = c.id "
            "GROUP BY c.id ORDER BY c.name").fetchall()
        return [CollectionInfo(r[0], r[2], r[4], r[3], r[1]) for r in rows]

    def files(self, collection: str | None = None) -> list[FileRecord]:
        where, params = ("WHERE c.name = ?", (collection,)) if collection else ("", ())
        rows = self.db.execute(
            "SELECT c.name, f.path, f.kind, f.sha256, f.size, f.pages, f.embedder, "
            "(SELECT COUNT(*) FROM doc_chunks k WHERE k.file_id = f.id), f.notes, "
            f"f.added_at FROM doc_files f JOIN doc_collections c ON c.id = f.collection_id "
            f"{where} ORDER BY c.name, f.path", params).fetchall()
        return [FileRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                           json.loads(r[8]) if r[8] else [], r[9]) for r in rows]

    def indexed(self, collection: str, path: str) -> tuple[str, str] | None:
        """(sha256, embedder) of ``path`` as indexed in ``collection``, or None."""
        row = self.db.execute(
            "SELECT f.sha256, f.embedder FROM doc_files f JOIN doc_collections c "
            "ON c.id = f.collection_id WHERE c.name = ? AND f.path = ?",
            (collection, path)).fetchone()
        return None if row is None else (row[0], row[1])

    def collection_ids(self, names: Sequence[str] | None) -> list[int]:
        """The ids of ``names`` (every collection when None); an unknown name is the
        person's to fix."""
        rows = self.db.execute("SELECT id, name FROM doc_collections").fetchall()
        known = {r[1]: r[0] for r in rows}
        if names is None:
            return sorted(known.values())
        missing = [n for n in names if n not in known]
        if missing:
            raise BadInput(f"no collection named {missing[0]!r}; "
                           f"the collections: {', '.join(sorted(known)) or 'none yet'}")
        return [known[n] for n in names]

    def passages(self, collection: str) -> list[StoredPassage]:
        """Every passage of ``collection``, file by file in order."""
        (cid,) = self.collection_ids([collection])
        rows = self.db.execute(
            "SELECT k.id, f.path, k.page, k.page_end, k.heading, k.text FROM doc_chunks k "
            "JOIN doc_files f ON f.id = k.file_id WHERE f.collection_id = ? "
            "ORDER BY f.path, k.position", (cid,)).fetchall()
        return [StoredPassage(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def held_out(self, collection: str) -> list[Question]:
        """The drafted questions about ``collection`` kept out of training."""
        (cid,) = self.collection_ids([collection])
        rows = self.db.execute("SELECT question, answer, source FROM doc_questions "
                               "WHERE collection_id = ? ORDER BY id", (cid,)).fetchall()
        return [Question(r[0], r[1], r[2]) for r in rows]

    # ---------------------------------------------------------------- writing

    def hold_out(self, collection: str, questions: Sequence[Question]) -> None:
        """Keep ``questions`` for asking after Teach (beside those drafted before)."""
        (cid,) = self.collection_ids([collection])
        now = datetime.now(UTC).isoformat(timespec="seconds")
        with self.db.transaction() as db:
            for q in questions:
                db.execute("INSERT INTO doc_questions (collection_id, question, answer, "
                           "source, created_at) VALUES (?, ?, ?, ?, ?)",
                           (cid, q.question, q.answer, q.source, now))


    def replace_file(self, collection: str, record: FileRecord, chunks: Sequence[Chunk],
                     vectors: np.ndarray) -> None:
        """Put ``path``'s passages in place of any it had, in one transaction."""
        if len(chunks) != len(vectors):
            raise ValueError("one vector per chunk")
        now = datetime.now(UTC).isoformat(timespec="seconds")
        blobs = np.ascontiguousarray(vectors, dtype="<f4")
        with self.db.transaction() as db:
            cid = self._collection_id(db, collection, now)
            self._delete_files(db, "collection_id = ? AND path = ?", (cid, record.path))
            fid = db.execute(
                "INSERT INTO doc_files (collection_id, path, kind, sha256, size, pages, "
                "embedder, notes, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, record.path, record.kind, record.sha256, record.size, record.pages,
                 record.embedder, json.dumps(record.notes), now)).inserted_id
            for position, (chunk, vector) in enumerate(zip(chunks, blobs, strict=True)):
                rowid = db.execute(
                    "INSERT INTO doc_chunks (file_id, position, page, page_end, char_start, "
                    "char_end, heading, text, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (fid, position, chunk.page, chunk.page_end, chunk.start, chunk.end,
                     chunk.heading, chunk.text, vector.tobytes())).inserted_id
                db.execute("INSERT INTO doc_chunks_fts (rowid, text, heading) "
                           "VALUES (?, ?, ?)", (rowid, chunk.text, chunk.heading))

    def remove_paths(self, collection: str, paths: Sequence[str]) -> int:
        """Forget ``paths`` (a folder: every file under it) in ``collection``; how many."""
        (cid,) = self.collection_ids([collection])
        removed = 0
        with self.db.transaction() as db:
            for path in paths:
                under = path.rstrip("/") + "/"  # a prefix, not LIKE: names hold % and _
                removed += self._delete_files(
                    db, "collection_id = ? AND (path = ? OR substr(path, 1, length(?)) = ?)",
                    (cid, path, under, under))
        return removed

    def remove_collection(self, collection: str) -> int:
        (cid,) = self.collection_ids([collection])
        with self.db.transaction() as db:
            removed = self._delete_files(db, "collection_id = ?", (cid,))
            db.execute("DELETE FROM doc_collections WHERE id = ?", (cid,))
        return removed

    @staticmethod
    def _collection_id(db: Database, name: str, now: str) -> int:
        row = db.execute("SELECT id FROM doc_collections WHERE name = ?", (name,)).fetchone()
        if row is not None:
            return int(row[0])
        return db.execute("INSERT INTO doc_collections (name, created_at) VALUES (?, ?)",
                          (name, now)).inserted_id

    @staticmethod
    def _delete_files(db: Database, where: str, params: tuple[object, ...]) -> int:
        """Delete the matching files with their passages and the passages' FTS rows
        (external content: FTS5 must be told the old text to forget it)."""
        ids = [r[0] for r in db.execute(f"SELECT id FROM doc_files WHERE {where}", params)]
        for fid in ids:
            db.execute("INSERT INTO doc_chunks_fts (doc_chunks_fts, rowid, text, heading) "
                       "SELECT 'delete', id, text, heading FROM doc_chunks WHERE file_id = ?",
                       (fid,))
            db.execute("DELETE FROM doc_chunks WHERE file_id = ?", (fid,))
            db.execute("DELETE FROM doc_files WHERE id = ?", (fid,))
        return len(ids)
