"""The MCP servers a person has added (Settings > Tools, ``hearth tools add``), kept in
``<home>/mcp-servers.json``.

Adding a server stores how to start it, never starts it: a server runs only while a
conversation uses it (:mod:`app.tools.toolbox`). The file is rewritten atomically; one
that cannot be read is set aside (``.unreadable``) with a notice, and the list starts
empty rather than the window failing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from app.atomic import atomic_write_text
from app.tools.mcp_client import McpConnection, McpError, McpServer

log = logging.getLogger("hearth.tools")
FILE_NAME = "mcp-servers.json"


@dataclass(frozen=True)
class ServerEntry:
    name: str
    command: str = ""
    """As the person wrote it (``python -m mcp_server_time``); split without a shell."""
    url: str = ""

    def server(self) -> McpServer:
        if self.url:
            return McpServer(self.name, url=self.url)
        return McpServer.from_command(self.command, self.name)


class ServerList:
    def __init__(self, home_root: Path) -> None:
        self.path = home_root / FILE_NAME
        self.notices: list[str] = []

    def entries(self) -> list[ServerEntry]:
        try:
            raw = json.loads(self.path.read_text("utf-8"))
            entries = [ServerEntry(str(e["name"]), str(e.get("command", "")),
                                   str(e.get("url", ""))) for e in raw["servers"]]
        except FileNotFoundError:
            return []
        except (ValueError, KeyError, TypeError, OSError) as exc:
            aside = self.path.with_suffix(".unreadable")
            self.path.replace(aside)
            self.notices.append(f"{self.path.name} could not be read ({exc}); it was set "
                                f"aside as {aside.name} and the list starts empty")
            return []
        return entries

    def add(self, entry: ServerEntry) -> None:
        """Store a server; McpError if it is not usable or its name is taken."""
        entry.server()  # checks the command or URL
        entries = self.entries()
        if any(e.name == entry.name for e in entries):
            raise McpError(f"there is already an MCP server named {entry.name!r}")
        self._save([*entries, entry])

    def remove(self, name: str) -> None:
        entries = self.entries()
        if not any(e.name == name for e in entries):
            raise McpError(f"there is no MCP server named {name!r}")
        self._save([e for e in entries if e.name != name])

    def _save(self, entries: list[ServerEntry]) -> None:
        atomic_write_text(self.path, json.dumps(
            {"servers": [asdict(e) for e in entries]}, indent=2, ensure_ascii=False))


@dataclass
class Listing:
    """One server's answer to "what do you offer" (``hearth tools list --json`` prints
    these; Settings > Tools shows them)."""

    server: str
    problem: str = ""
    tools: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def listing_of(server: McpServer, logs: Path) -> Listing:
    """Start ``server`` just long enough to ask what it offers, then stop it (blocking:
    seconds; a server that cannot start is a Listing with its problem)."""
    connection = McpConnection(server, logs)
    try:
        found = connection.start()
    except McpError as exc:
        return Listing(server.name, str(exc))
    finally:
        connection.close()
    return Listing(server.name, "", [t.to_openai()["function"] for t in found],
                   connection.skipped)
