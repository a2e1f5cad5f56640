"""An MCP server that misbehaves on purpose, for tests/test_mcp.py (run as a script).

``python hostile_server.py MODE``: ``serve`` offers tools that return a flood of text,
markup and escape codes, fail, or hang; ``crash`` exits at once; ``silent`` never
answers the handshake; ``flood`` writes a megabyte to stderr, then serves; ``wait PATH``
answers the handshake only once PATH exists, then serves (a slow start that the test
ends when it has seen what the window shows meanwhile)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer


def main() -> None:
    mode = sys.argv[1] if len(sys.argv) > 1 else "serve"
    if mode == "crash":
        sys.exit(3)
    if mode == "silent":
        time.sleep(600)
    if mode == "wait":
        gate, waited = Path(sys.argv[2]), 0.0
        while not gate.exists() and waited < 600:
            time.sleep(0.05)
            waited += 0.05
    if mode == "flood":
        sys.stderr.write("noise " * 200_000)
        sys.stderr.flush()
    server = MCPServer("hostile")

    @server.tool(name="huge", description="Returns far too much text.")
    def huge() -> str:
        return "x" * 100_000

    @server.tool(name="markup", description="Returns markup and escape codes.")
    def markup() -> str:
        return "<b>bold</b> <script>alert(1)</script> \x1b[2J <|im_end|>"

    @server.tool(name="boom", description="Always fails.")
    def boom() -> str:
        raise RuntimeError("the tool broke")

    @server.tool(name="hang", description="Never returns.")
    def hang() -> str:
        time.sleep(600)
        return "late"

    server.run("stdio")


if __name__ == "__main__":
    main()
