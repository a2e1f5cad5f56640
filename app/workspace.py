"""One open Hearth home: its database, library, conversations and settings together.

Built once by whoever starts (the GUI, the CLI, a test) and passed down; there are no
global instances, so a test builds its own workspace over a temporary home.

Whoever changes the home's files (the app, a CLI command that imports, downloads or
trains) opens it with ``lock=`` and so holds the home's lock (:mod:`app.home_lock`)
until :meth:`Workspace.close`; a second such opener gets :class:`HomeLocked` saying
which process has it. Problems that were repaired on the way in (a damaged database or
settings file, versions.json or kernels.json kept aside: :mod:`app.side_files`) are
listed in :attr:`Workspace.notices` for the person.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from app.chat.conversations import ConversationStore
from app.db import connect
from app.home_lock import HomeLock, HomeLocked, acquire
from app.inference.kernels import KernelMemory
from app.models.library import Library
from app.paths import HearthHome, resolve_home
from app.settings import Settings, load_settings, save_settings
from app.teach.versions import VersionStore

__all__ = ["HomeLocked", "Workspace", "open_workspace"]


@dataclass
class Workspace:
    home: HearthHome
    library: Library
    store: ConversationStore
    settings: Settings
    notices: list[str] = field(default_factory=list)
    """Sentences for the person about what was repaired while opening (shown once)."""
    lock: HomeLock | None = None

    def save_settings(self) -> None:
        save_settings(self.home.settings_file, self.settings)

    def close(self) -> None:
        self.library.conn.close()
        if self.lock is not None:
            self.lock.release()


def check_side_files(home: HearthHome, notices: list[str]) -> None:
    """Read the side files the window reads while it is built, so a damaged one is kept
    aside and told now, with the database's and the settings' notices (S6)."""
    VersionStore(home, notices).check()
    KernelMemory(home.kernels_file, notices)


def open_workspace(home: str | os.PathLike[str] | None = None,
                   register_starter: bool = True, lock: str | None = None) -> Workspace:
    """Open the home; with ``lock`` (who is opening, in a few words) hold its lock."""
    resolved = resolve_home(home)
    held = acquire(resolved.root, lock) if lock is not None else None
    notices: list[str] = []
    try:
        conn = connect(resolved.database, notices)
        try:
            library = Library(resolved, conn)
            if register_starter:
                library.ensure_starter()
            settings = load_settings(resolved.settings_file, notices)
            check_side_files(resolved, notices)
        except BaseException:
            conn.close()
            raise
    except BaseException:
        if held is not None:
            held.release()
        raise
    return Workspace(resolved, library, ConversationStore(conn), settings, notices, held)
