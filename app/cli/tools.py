"""``hearth tools``: the MCP servers Hearth may offer tools from, and their tools.

``list`` starts each added server (and each ``--mcp`` one) just long enough to ask what
it offers, then stops it; a server that cannot start is named with the reason.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from app.errors import ExitCode
from app.tools.mcp_client import McpServer
from app.tools.servers import ServerEntry, ServerList, listing_of
from app.workspace import Workspace


def add_parser(sub: Any) -> None:
    tools = sub.add_parser("tools", help="MCP servers and the tools they offer") \
        .add_subparsers(dest="tools_command", required=True)
    ls = tools.add_parser("list", help="start each server briefly and list its tools")
    ls.add_argument("--mcp", action="append", default=[], metavar="COMMAND",
                    help="also this server (not added), e.g. \"python -m mcp_server_time\"")
    ls.add_argument("--json", action="store_true")
    add = tools.add_parser("add", help="add an MCP server (it starts only when used)")
    add.add_argument("name")
    where = add.add_mutually_exclusive_group(required=True)
    where.add_argument("--command", dest="start_command",
                       help="how to start it (stdio), e.g. \"uvx mcp-server-git\"")
    where.add_argument("--url", help="a local streamable-HTTP URL, http://127.0.0.1:PORT/mcp")
    rm = tools.add_parser("rm", help="remove an added MCP server")
    rm.add_argument("name")


def tools(ws: Workspace, args: argparse.Namespace) -> int:
    servers = ServerList(ws.home.root)
    if args.tools_command == "add":
        servers.add(ServerEntry(args.name, args.start_command or "", args.url or ""))
        print(f"Added {args.name}; it starts when a conversation uses its tools.")
        return ExitCode.OK
    if args.tools_command == "rm":
        servers.remove(args.name)
        return ExitCode.OK
    wanted = [e.server() for e in servers.entries()]
    wanted += [McpServer.from_command(c) for c in args.mcp]
    report = [listing_of(server, ws.home.logs) for server in wanted]
    for line in servers.notices:
        print(f"hearth: {line}")
    if args.json:
        print(json.dumps([asdict(r) for r in report], indent=2))
    else:
        for listing in report:
            print(f"{listing.server}: {listing.problem or f'{len(listing.tools)} tools'}")
            for tool in listing.tools:
                first = (tool["description"] or "").splitlines()[:1]
                print(f"  {tool['name']}: {first[0] if first else ''}")
            for skipped in listing.skipped:
                print(f"  left out: {skipped}")
    return ExitCode.OK if all(not r.problem for r in report) else ExitCode.FAILED
