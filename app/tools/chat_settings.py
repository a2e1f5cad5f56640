"""Which tools one conversation uses, kept in its settings (``settings["tools"]``).

A conversation uses none until the person switches some on (the chat's settings, Tools):
the added servers it may call (:mod:`app.tools.servers`), how many calls in a row before
the model must answer, and whether each turn starts with a call (small models rarely
call unless made to). The settings name servers, not tools: a server's tools are known
only once it runs, and it runs only while the conversation uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.tools.mcp_client import McpError
from app.tools.servers import ServerEntry
from app.tools.toolbox import Toolbox

KEY = "tools"
MAX_ROUNDS = 20
"""The most calls in a row a person may allow; each round is a reply and a run."""


@dataclass(frozen=True)
class ToolSettings:
    servers: tuple[str, ...] = ()
    """The added servers (by name) this conversation may call; none: tools are off."""
    max_rounds: int = 5
    required: bool = False
    """Each turn's first reply is a call (held to the tools' schemas by grammar)."""

    @property
    def on(self) -> bool:
        return bool(self.servers)

    @classmethod
    def of(cls, settings: dict[str, Any]) -> ToolSettings:
        """A conversation's tool settings; an entry that is not one (a hand-edited or
        foreign export) reads as tools off, never as an error."""
        raw = settings.get(KEY)
        if not isinstance(raw, dict):
            return cls()
        servers = raw.get("servers")
        names = tuple(str(s) for s in servers) if isinstance(servers, list) else ()
        rounds = raw.get("max_rounds")
        rounds = rounds if isinstance(rounds, int) and not isinstance(rounds, bool) else 5
        return cls(names, min(MAX_ROUNDS, max(1, rounds)), raw.get("required") is True)

    def stored(self, settings: dict[str, Any]) -> dict[str, Any]:
        """``settings`` with these tool settings in them (the rest kept)."""
        return dict(settings, **{KEY: {"servers": list(self.servers),
                                       "max_rounds": self.max_rounds,
                                       "required": self.required}})

    def toolbox(self, entries: list[ServerEntry], logs: Path) -> Toolbox:
        """A toolbox of the chosen servers that are still added (not started yet). A
        server removed since is left out; one whose stored command no longer reads is
        named among the toolbox's problems."""
        servers, problems = [], []
        for entry in entries:
            if entry.name not in self.servers:
                continue
            try:
                servers.append(entry.server())
            except McpError as exc:
                problems.append(str(exc))
        box = Toolbox(servers, logs, self.max_rounds, self.required)
        box.problems.extend(problems)
        return box
