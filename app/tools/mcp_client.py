"""One MCP server, spoken to through the official ``mcp`` SDK from synchronous code.

The SDK is async (anyio); the chat, the CLI and the Qt window are not. A
:class:`McpConnection` runs the SDK in an event loop on a thread of its own (anyio's
blocking portal) and offers three blocking calls: :meth:`~McpConnection.start`,
:meth:`~McpConnection.call` and :meth:`~McpConnection.close`. A call can be stopped from
another thread (:class:`CallStop`, the person's Stop): its task in the portal is
cancelled, the SDK tells the server (``notifications/cancelled``), and the server stays
up for the next call.

An MCP server is a stranger's program, and everything it says is untrusted:

- it starts only when a conversation uses it, as a child process (stdio) or at a local
  URL (streamable HTTP; loopback only), and stops with :meth:`close`;
- its stderr goes to ``<home>/logs/mcp-<name>.log``, never into the conversation;
- every request has a deadline (:data:`START_TIMEOUT_S`, :data:`CALL_TIMEOUT_S`): a
  server that hangs gives a clear error and the conversation goes on;
- a tool whose definition is not usable (a bad name, a schema too large or not JSON
  Schema) is left out with the reason (:attr:`McpConnection.skipped`);
- a result is text, cut at :data:`MAX_RESULT_CHARS`; images and other content are named,
  not passed on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import sys
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlparse

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from app.chat.tools import Tool, ToolError, tool_from
from app.errors import HearthError
from app.paths import safe_stem

log = logging.getLogger("hearth.tools")
START_TIMEOUT_S = 30.0
"""Starting the server and listing its tools (a Python server imports for seconds)."""
CALL_TIMEOUT_S = 60.0
"""One tool call."""
MAX_RESULT_CHARS = 20_000
"""Characters of a result the model and the person are shown (about 5,000 tokens)."""
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class McpError(HearthError):
    """An MCP server could not be started, did not answer, or failed; says which."""


class CallStopped(McpError):
    """The person stopped the call before it ended."""


class CallStop:
    """Stops one call from another thread (the window's Stop), at once: the thread that
    waits for the call returns with :class:`CallStopped` without waiting for the server.

    The server is left running. The SDK cancels the request and tells the server, which
    the SDK's own servers honour by cancelling the tool's task; a server that ignores it
    still answers other calls (tests/test_mcp.py), and restarting it would cost the
    seconds of its start and whatever state it keeps (a browser's page, an open file)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._future: Future[Any] | None = None
        self._asked = False

    @property
    def asked(self) -> bool:
        return self._asked

    def stop(self) -> None:
        with self._lock:
            self._asked, future = True, self._future
        if future is not None:
            future.cancel()  # anyio cancels the task's scope in the portal's loop

    def _watch(self, future: Future[Any]) -> None:
        with self._lock:
            self._future, asked = future, self._asked
        if asked:  # stopped before the call reached the portal
            future.cancel()


@dataclass(frozen=True)
class McpServer:
    """How to reach one MCP server: a command (stdio) or a local URL (streamable HTTP)."""

    name: str
    command: list[str] = field(default_factory=list)
    url: str = ""

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise McpError(f"MCP server {self.name!r}: give a command or a URL, not both")
        if self.url:
            parsed = urlparse(self.url)
            if parsed.scheme not in ("http", "https") or parsed.hostname not in LOCAL_HOSTS:
                raise McpError(f"MCP server {self.name!r}: only local URLs "
                               "(http://127.0.0.1:PORT/...) are used; nothing leaves the "
                               "machine")

    @classmethod
    def from_command(cls, text: str, name: str = "") -> McpServer:
        """``"uvx mcp-server-time"`` as a person writes it (shell quoting, no shell)."""
        try:
            words = shlex.split(text)
        except ValueError as exc:
            raise McpError(f"the MCP command {text!r} cannot be read: {exc}") from None
        if not words:
            raise McpError("the MCP command is empty")
        if words[0] in ("python", "python3"):
            words[0] = sys.executable  # the interpreter Hearth runs in, with its packages
        return cls(name or _name_of(words), command=words)


@dataclass(frozen=True)
class ToolResult:
    text: str
    is_error: bool = False


class McpConnection:
    """A running MCP server: its usable tools, and calls to them (blocking)."""

    def __init__(self, server: McpServer, logs: Path) -> None:
        self.server = server
        self.log_path = logs / f"mcp-{safe_stem(server.name, 'server')[:60]}.log"
        self.tools: list[Tool] = []
        self.skipped: list[str] = []
        self._stack = contextlib.ExitStack()
        self._portal: BlockingPortal | None = None
        self._session: Any = None

    def start(self) -> list[Tool]:
        """Start the server, handshake, list its tools; McpError if it cannot."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        errlog: TextIO = self._stack.enter_context(
            self.log_path.open("w", encoding="utf-8", errors="replace"))
        self._portal = self._stack.enter_context(start_blocking_portal())
        try:
            streams = self._stack.enter_context(
                self._portal.wrap_async_context_manager(self._transport(errlog)))
            from mcp import ClientSession  # the SDK loads only when a server is used
            self._session = self._stack.enter_context(self._portal.wrap_async_context_manager(
                ClientSession(streams[0], streams[1])))
            self._run(self._session.initialize, START_TIMEOUT_S, "start")
            listed = self._run(self._session.list_tools, START_TIMEOUT_S, "list its tools")
        except McpError:
            self.close()
            raise
        except Exception as exc:  # spawning: a missing command, a refused connection
            self.close()
            raise McpError(f"the MCP server {self.server.name!r} could not start: "
                           f"{type(exc).__name__}: {_short(str(exc))}") from None
        except BaseException:
            self.close()
            raise
        self.tools, self.skipped = usable_tools(listed.tools)
        return self.tools

    def call(self, name: str, arguments: dict[str, Any], timeout: float = CALL_TIMEOUT_S,
             stop: CallStop | None = None) -> ToolResult:
        """Run one tool; a failing tool is a ToolResult with ``is_error``, a server that
        does not answer in time or has gone is McpError, a call ``stop`` ended is
        CallStopped."""
        if self._session is None:
            raise McpError(f"the MCP server {self.server.name!r} is not running")
        session = self._session

        async def ask() -> Any:
            return await session.call_tool(name, arguments)

        result = self._run(ask, timeout, f"run {name}", stop)
        return ToolResult(result_text(result), bool(getattr(result, "is_error", False)))

    def close(self) -> None:
        """Stop the server (its process ends with the stdio transport) and the loop."""
        self._session = None
        try:
            self._stack.close()
        except Exception as exc:  # a server that died mid-shutdown: nothing left to stop
            log.info("closing MCP server %s: %s", self.server.name, exc)
        self._portal = None

    def _transport(self, errlog: TextIO) -> Any:
        if self.server.url:
            from mcp.client.streamable_http import streamable_http_client
            return streamable_http_client(self.server.url)
        from mcp import StdioServerParameters
        from mcp.client.stdio import stdio_client
        command, *args = self.server.command
        return stdio_client(StdioServerParameters(command=command, args=args), errlog=errlog)

    def _run(self, step: Callable[[], Awaitable[Any]], timeout: float, what: str,
             stop: CallStop | None = None) -> Any:
        assert self._portal is not None

        async def bounded() -> Any:
            with anyio.fail_after(timeout):
                return await step()

        future = self._portal.start_task_soon(bounded)
        if stop is not None:
            stop._watch(future)
        try:
            return future.result()
        except CancelledError:  # the person's Stop, or the portal closing under it
            if stop is not None and stop.asked:
                raise CallStopped(f"{what}: stopped by you") from None
            raise McpError(f"the MCP server {self.server.name!r} was stopped before it "
                           f"could {what}") from None
        except TimeoutError:
            raise McpError(f"the MCP server {self.server.name!r} did not {what} within "
                           f"{timeout:.0f} s (its log: {self.log_path})") from None
        except HearthError:
            raise
        except Exception as exc:
            raise McpError(f"the MCP server {self.server.name!r} could not {what}: "
                           f"{type(exc).__name__}: {_short(str(exc))} "
                           f"(its log: {self.log_path})") from None


def usable_tools(listed: list[Any]) -> tuple[list[Tool], list[str]]:
    """The server's tools as checked definitions, and why any were left out."""
    tools: list[Tool] = []
    skipped: list[str] = []
    for item in listed:
        name = getattr(item, "name", "?")
        try:
            tools.append(tool_from({"name": name, "description": item.description or "",
                                    "parameters": item.input_schema}, f"tool {name!r}"))
        except ToolError as exc:
            skipped.append(str(exc))
    return tools, skipped


def result_text(result: Any) -> str:
    """A result's content as plain text, cut at :data:`MAX_RESULT_CHARS`."""
    parts: list[str] = []
    for block in getattr(result, "content", None) or []:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(str(getattr(block, "text", "")))
        else:
            parts.append(f"[{kind or 'unknown'} content left out]")
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(json.dumps(structured, ensure_ascii=False))
    text = "\n".join(parts)
    if len(text) > MAX_RESULT_CHARS:
        text = (text[:MAX_RESULT_CHARS] + f"\n[cut: the tool returned {len(text):,} "
                f"characters; the first {MAX_RESULT_CHARS:,} are shown]")
    return text


def _name_of(words: list[str]) -> str:
    """A server's name from its command: the module after ``-m``, the package a runner
    (``uvx``, ``npx``, ``pipx run``) starts, else the program's own name."""
    if "-m" in words[:-1]:
        return words[words.index("-m") + 1]
    rest = [w for w in words[1:] if not w.startswith("-") and w != "run"]
    if Path(words[0]).name in ("uvx", "npx", "pipx", "bunx") and rest:
        return rest[0]
    return Path(words[0]).name


def _short(text: str) -> str:
    return text if len(text) <= 300 else text[:297] + "..."
