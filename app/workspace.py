"""One open Hearth home: its database, library, conversations and settings together.

Built once by whoever starts (the GUI, the CLI, a test) and passed down; there are no
global instances, so a test builds its own workspace over a temporary home.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from app.db import connect
from app.library import Library
from app.paths import HearthHome, resolve_home
from app.settings import Settings, load_settings, save_settings
from app.store import ConversationStore


@dataclass
class Workspace:
    home: HearthHome
    library: Library
    store: ConversationStore
    settings: Settings

    def save_settings(self) -> None:
        save_settings(self.home.settings_file, self.settings)

    def close(self) -> None:
        self.library.conn.close()


def open_workspace(home: str | os.PathLike[str] | None = None,
                   register_starter: bool = True) -> Workspace:
    resolved = resolve_home(home)
    conn = connect(resolved.database)
    library = Library(resolved, conn)
    if register_starter:
        library.ensure_starter()
    return Workspace(resolved, library, ConversationStore(conn),
                     load_settings(resolved.settings_file))
