"""The one SQLite database of a Hearth home, and its schema migrations.

The library and the conversation store share ``hearth.db``. WAL mode lets the GUI read
while a reply is being saved, and every write is its own short transaction, so a crash
loses at most the message being written.

One process opens one :class:`Database` and its threads share it (the GUI thread, the
off-thread helpers, a chat turn's event reader). SQLite's transactions belong to the
connection, not to a thread, so :class:`Database` serialises its use with a lock: each
statement runs to its last row under it, and :meth:`Database.transaction` holds it from
``BEGIN`` to ``COMMIT``, so one thread's statements never land inside another's
transaction, nor its ``ROLLBACK`` undo another thread's write.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from app.errors import HearthError
from app.paths import private_file

# Each entry upgrades the schema by one version; never edit a shipped entry, append.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE models (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        source TEXT NOT NULL,
        added_at TEXT NOT NULL,
        info TEXT NOT NULL,
        provenance TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY,
        title TEXT NOT NULL,
        model TEXT,
        system_prompt TEXT NOT NULL DEFAULT '',
        settings TEXT NOT NULL DEFAULT '{}',
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
        content TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'complete',
        stats TEXT,
        created_at TEXT NOT NULL
    );
    CREATE INDEX messages_by_conversation ON messages(conversation_id, position);
    """,
    # 2: corrections collected from chats (app/chat/corrections.py).
    """
    CREATE TABLE training_examples (
        id INTEGER PRIMARY KEY,
        conversation_id INTEGER REFERENCES conversations(id) ON DELETE SET NULL,
        model TEXT,
        messages TEXT NOT NULL,
        rejected TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    """,
    # 3: regenerated replies keep their earlier versions. ``versions`` is a JSON list of
    # {content, status, stats, created_at} (empty while a reply has one version) and
    # ``version`` the index shown; content/status/stats always mirror the shown version,
    # so prompts and search read one row as before.
    """
    ALTER TABLE messages ADD COLUMN versions TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE messages ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    """,
    # 4: branches. A message follows its ``parent_id`` (NULL: the first); messages with
    # the same parent are branches of one another (edit and resend, "Branch from
    # here"), and ``conversations.leaf_id`` is the last message of the branch shown.
    # ``position`` stays the depth, so a branch reads in order as before. Until now a
    # conversation was one line: each message's parent is the one before it.
    """
    ALTER TABLE messages ADD COLUMN parent_id INTEGER REFERENCES messages(id)
        ON DELETE CASCADE;
    ALTER TABLE conversations ADD COLUMN leaf_id INTEGER;
    UPDATE messages SET parent_id = (
        SELECT p.id FROM messages p WHERE p.conversation_id = messages.conversation_id
        AND p.position = messages.position - 1 ORDER BY p.id LIMIT 1);
    UPDATE conversations SET leaf_id = (
        SELECT m.id FROM messages m WHERE m.conversation_id = conversations.id
        ORDER BY m.position DESC, m.id DESC LIMIT 1);
    CREATE INDEX messages_by_parent ON messages(conversation_id, parent_id);
    """,
    # 5: a reply that called tools keeps its calls, the person's decisions and the
    # results (app/chat/tool_steps.py), as JSON; '[]' for every other message.
    """
    ALTER TABLE messages ADD COLUMN tool_steps TEXT NOT NULL DEFAULT '[]';
    """,
    # 6: a correction of a reply that called tools (app/chat/corrections.py) keeps the
    # definitions offered at that turn (OpenAI's ``tools`` list, as JSON) and the
    # original calls (the rejected side); '' for a correction of words, as every older row.
    """
    ALTER TABLE training_examples ADD COLUMN tools TEXT NOT NULL DEFAULT '';
    ALTER TABLE training_examples ADD COLUMN rejected_calls TEXT NOT NULL DEFAULT '';
    """,
    # 7: document collections (app/docs/store.py). A chunk is text[char_start:char_end]
    # of its file's extracted text; ``vector`` its float32 embedding. The FTS5 table
    # reads its text from doc_chunks (external content), so the store deletes a chunk's
    # FTS entry itself before the chunk (no triggers: MIGRATIONS are split at ';').
    # AUTOINCREMENT: ids are never reused, so (count, max id) names the vectors' state.
    """
    CREATE TABLE doc_collections (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL
    );
    CREATE TABLE doc_files (
        id INTEGER PRIMARY KEY,
        collection_id INTEGER NOT NULL REFERENCES doc_collections(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        kind TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        size INTEGER NOT NULL,
        pages INTEGER,
        embedder TEXT NOT NULL,
        notes TEXT NOT NULL DEFAULT '',
        added_at TEXT NOT NULL,
        UNIQUE (collection_id, path)
    );
    CREATE TABLE doc_chunks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        file_id INTEGER NOT NULL REFERENCES doc_files(id) ON DELETE CASCADE,
        position INTEGER NOT NULL,
        page INTEGER,
        char_start INTEGER NOT NULL,
        char_end INTEGER NOT NULL,
        heading TEXT NOT NULL,
        text TEXT NOT NULL,
        vector BLOB NOT NULL
    );
    CREATE INDEX doc_chunks_by_file ON doc_chunks(file_id, position);
    CREATE VIRTUAL TABLE doc_chunks_fts USING fts5(
        text, heading, content='doc_chunks', content_rowid='id',
        tokenize='porter unicode61 remove_diacritics 2')
    """,
    # 8: a passage whose sentence runs on over a PDF page break names the page it ends
    # on too (app/docs/chunking.py); NULL: it ends on ``page``.
    """
    ALTER TABLE doc_chunks ADD COLUMN page_end INTEGER
    """,
    # 9: a reply answered from documents keeps the numbered passages it was given
    # (app/docs/citing.py, as JSON); '[]' for every other message.
    """
    ALTER TABLE messages ADD COLUMN sources TEXT NOT NULL DEFAULT '[]'
    """,
    # 10: teaching a document (app/docs/teaching.py). A correction drafted from a
    # document says where it came from (``source``; '' for one made in a chat). The
    # drafted questions held out of training wait in doc_questions to be asked after
    # Teach; they go with their collection.
    """
    ALTER TABLE training_examples ADD COLUMN source TEXT NOT NULL DEFAULT '';
    CREATE TABLE doc_questions (
        id INTEGER PRIMARY KEY,
        collection_id INTEGER NOT NULL REFERENCES doc_collections(id) ON DELETE CASCADE,
        question TEXT NOT NULL,
        answer TEXT NOT NULL,
        source TEXT NOT NULL,
        created_at TEXT NOT NULL
    )
    """,
]


class DatabaseError(HearthError, RuntimeError):
    """``hearth.db`` cannot be used right now; the message says why and what to do."""


class DatabaseBusy(DatabaseError):
    """Another program holds a lock on ``hearth.db`` for longer than we wait."""


# SQLite's result codes for a file that is damaged or not a database at all.
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
BUSY_TIMEOUT_S = 10.0  # how long to wait for another writer before saying so


class Result:
    """A statement's rows, all read while the lock was held; the cursor's reading API."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._rows = cursor.fetchall()
        self._next = 0
        self.lastrowid = cursor.lastrowid
        self.rowcount = cursor.rowcount

    @property
    def inserted_id(self) -> int:
        """The row an INSERT made (sqlite3 leaves ``lastrowid`` None only where none was)."""
        if self.lastrowid is None:
            raise DatabaseError("the statement inserted no row")
        return self.lastrowid

    def fetchone(self) -> Any:
        if self._next >= len(self._rows):
            return None
        self._next += 1
        return self._rows[self._next - 1]

    def fetchall(self) -> list[Any]:
        rest, self._next = self._rows[self._next:], len(self._rows)
        return rest

    def __iter__(self) -> Iterator[Any]:
        return iter(self.fetchall())


class Database:
    """``hearth.db`` for every thread of one process: statements and transactions, in turn.

    A re-entrant lock, rather than a connection per thread, because the threads are few
    and short-lived (an off-thread call opens none of its own to close), the writes are
    small, and the GUI's reads then always see the GUI's own last write.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path | str = "hearth.db") -> None:
        self._conn = conn
        self._lock = threading.RLock()
        self.path = Path(path)

    def execute(self, sql: str, parameters: Sequence[Any] = ()) -> Result:
        """Run one statement to completion; inside :meth:`transaction` it joins it."""
        with self._lock, self._busy_explained():
            return Result(self._conn.execute(sql, parameters))

    @contextlib.contextmanager
    def _busy_explained(self) -> Iterator[None]:
        """SQLite's "database is locked" (another program kept it past our wait) as
        :class:`DatabaseBusy`, which says what happened and what to do."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            if _is_busy(exc):
                raise DatabaseBusy(
                    f"{self.path} is locked by another program (held for more than "
                    f"{BUSY_TIMEOUT_S:g} seconds), so the last change was not saved. "
                    "Close other programs using it (a database browser, a backup, a "
                    "second Hearth on this folder) and try again") from exc
            raise

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Database]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error), other threads held off.

        IMMEDIATE takes SQLite's write lock at once, so a read-then-write (the next
        message's position) cannot be overtaken by another process either.
        """
        with self._lock, self._busy_explained():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):  # none was begun
                    self._conn.execute("ROLLBACK")
                raise
            try:
                self._conn.execute("COMMIT")
            except sqlite3.OperationalError:
                with contextlib.suppress(sqlite3.OperationalError):
                    self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def connect(path: Path | str, notices: list[str] | None = None) -> Database:
    """Open (and if needed create or upgrade) the database at ``path``.

    A damaged file is moved aside (``hearth.db.damaged-<time>``, with its WAL) and a
    fresh database is started in its place; the sentence saying so is appended to
    ``notices`` for the caller to show. A database another program keeps locked raises
    :class:`DatabaseBusy`, so the person can close that program and try again.
    """
    path = Path(path)
    private_file(path)  # owner-only (its WAL follows), never through a link (S12)
    try:
        return Database(_open(path), path)
    except sqlite3.DatabaseError as exc:
        if not _is_corrupt(exc):
            raise _explain(exc, path) from exc
        kept = _move_aside(path)
        if notices is not None:
            notices.append(
                f"{path.name} was damaged ({exc}) and could not be read. It was kept as "
                f"{kept.name} and Hearth started a new, empty one: your conversations and "
                "the library list start over, model files in models/ are untouched and "
                "can be imported again.")
    private_file(path)
    try:
        return Database(_open(path), path)
    except sqlite3.DatabaseError as exc:
        raise _explain(exc, path) from exc


def _open(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, check_same_thread=False,
                           isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        check = conn.execute("PRAGMA quick_check(1)").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed: {check}")
        _migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return True
    text = str(exc).lower()
    return "not a database" in text or "malformed" in text


def _is_busy(exc: sqlite3.DatabaseError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)) or (
        "locked" in str(exc).lower())


def _explain(exc: sqlite3.DatabaseError, path: Path) -> DatabaseError:
    if _is_busy(exc):
        return DatabaseBusy(f"{path} is locked by another program (held for more than "
                            f"{BUSY_TIMEOUT_S:g} seconds); close other programs using it "
                            "and try again")
    return DatabaseError(f"{path} cannot be opened: {exc}")


def _move_aside(path: Path) -> Path:
    """Rename the damaged database (and its WAL and shared-memory files) out of the way."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    kept = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 2
    while kept.exists():
        kept, n = path.with_name(f"{path.name}.damaged-{stamp}-{n}"), n + 1
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            os.replace(source, kept.with_name(kept.name + suffix))
    return kept


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema up to date under SQLite's write lock.

    ``BEGIN IMMEDIATE`` takes the write lock before the version is read, so of two
    processes opening a fresh folder at once the second waits, then finds the schema
    already current instead of creating the same tables again.
    """
    if conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise DatabaseError(f"hearth.db was written by a newer Hearth (schema "
                                f"{version}); update Hearth to open it")
        for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={target}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
