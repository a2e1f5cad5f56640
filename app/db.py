"""The one SQLite database of a Hearth home, and its schema migrations.

The library and the conversation store share ``hearth.db``. WAL mode lets the GUI read
while a reply is being saved, and every write is its own short transaction, so a crash
loses at most the message being written.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

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
    # 2: corrections collected from chats (app/corrections.py).
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
]


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (and if needed create or upgrade) the database at ``path``."""
    conn = sqlite3.connect(str(path), timeout=10, check_same_thread=False,
                           isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA synchronous=NORMAL")
    _migrate(conn)
    return conn


def _migrate(conn: sqlite3.Connection) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        raise RuntimeError(f"hearth.db was written by a newer Hearth (schema {version}); "
                           "update Hearth to open it")
    for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN")
        try:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
