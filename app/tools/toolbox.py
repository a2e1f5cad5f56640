"""The tools one conversation uses: its MCP servers, started when first needed, and the
person's standing approvals.

A server starts only when a conversation that uses it needs its tools, and every server
stops when the conversation (or the app) closes the toolbox. A server that cannot start
is named with the reason and left out; the others still serve. Two servers offering a
tool of the same name: the first keeps the name, the second's is left out (and said).

Approval: each call is asked about unless the person chose "Always for this tool"
(:meth:`Toolbox.always_allow`), which holds for this conversation only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from app.chat.tool_steps import StepState, ToolStep
from app.chat.turn import ToolOffer
from app.tools.mcp_client import CallStop, CallStopped, McpConnection, McpError, McpServer

log = logging.getLogger("hearth.tools")


class Toolbox:
    def __init__(self, servers: list[McpServer], logs: Path, max_rounds: int = 5,
                 required: bool = False) -> None:
        self.servers = servers
        self.logs = logs
        self.max_rounds = max_rounds
        self.required = required
        self.connections: dict[str, McpConnection] = {}
        self.problems: list[str] = []
        self.allowed: set[str] = set()
        self._owner: dict[str, McpConnection] = {}

    def start(self) -> ToolOffer:
        """Start every server not yet running; the tools they offer, together."""
        for server in self.servers:
            if server.name in self.connections:
                continue
            connection = McpConnection(server, self.logs)
            try:
                connection.start()
            except McpError as exc:
                self.problems.append(str(exc))
                log.warning("%s", exc)
                continue
            self.connections[server.name] = connection
            self.problems.extend(f"{server.name}: {why}" for why in connection.skipped)
            for tool in connection.tools:
                if tool.name in self._owner:
                    self.problems.append(f"{server.name}: its tool {tool.name!r} is left out: "
                                         f"{self._owner[tool.name].server.name} has one "
                                         "by that name")
                    continue
                self._owner[tool.name] = connection
        return self.offer()

    def offer(self) -> ToolOffer:
        tools = [t for c in self.connections.values() for t in c.tools
                 if self._owner.get(t.name) is c]
        return ToolOffer(tools, {t.name: self._owner[t.name].server.name for t in tools},
                         self.max_rounds, self.required)

    def needs_asking(self, step: ToolStep) -> bool:
        return step.call.name not in self.allowed

    def always_allow(self, name: str) -> None:
        self.allowed.add(name)

    def run(self, step: ToolStep, stop: CallStop | None = None) -> ToolStep:
        """Run an allowed call: the step comes back ``ran``, ``failed`` or (``stop``
        asked) ``stopped``, never raising."""
        connection = self._owner.get(step.call.name)
        if connection is None:
            return _failed(step, f"no running server offers {step.call.name!r}")
        try:
            arguments = json.loads(step.call.arguments or "{}")
        except ValueError:
            return _failed(step, "its arguments are not JSON")
        try:
            result = connection.call(step.call.name, arguments, stop=stop)
        except CallStopped:
            step.state, step.result = StepState.STOPPED, ""
            return step
        except McpError as exc:
            return _failed(step, str(exc))
        step.state = StepState.FAILED if result.is_error else StepState.RAN
        step.result = result.text
        return step

    def close(self) -> None:
        for connection in self.connections.values():
            connection.close()
        self.connections.clear()
        self._owner.clear()


def _failed(step: ToolStep, why: str) -> ToolStep:
    step.state, step.result = StepState.FAILED, why
    return step
