"""MCP through the official SDK (issue 26): a real server from PyPI (mcp-server-time) over
stdio, and one that misbehaves on purpose: crashes, hangs, floods output, returns markup
or far too much, fails. Each gives a clear error or a failed step; nothing hangs Hearth."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.chat.tool_steps import StepState, ToolStep
from app.chat.tools import ToolCall
from app.tools import mcp_client
from app.tools.mcp_client import (
    MAX_RESULT_CHARS,
    CallStop,
    CallStopped,
    McpConnection,
    McpError,
    McpServer,
    usable_tools,
)
from app.tools.servers import ServerEntry, ServerList
from app.tools.toolbox import Toolbox

pytestmark = pytest.mark.slow  # child processes, the SDK's start-up
ROOT = Path(__file__).resolve().parent.parent
TIME = McpServer.from_command("python -m mcp_server_time --local-timezone UTC")
HOSTILE = str(Path(__file__).parent / "mcp" / "hostile_server.py")


def _hostile(mode: str) -> McpServer:
    return McpServer(f"hostile-{mode}", command=[sys.executable, HOSTILE, mode])


def test_the_time_server_lists_and_answers_then_stops(tmp_path: Path) -> None:
    connection = McpConnection(TIME, tmp_path)
    tools = connection.start()
    assert {t.name for t in tools} == {"get_current_time", "convert_time"}
    assert tools[0].parameters["type"] == "object"
    result = connection.call("get_current_time", {"timezone": "Asia/Tokyo"})
    assert not result.is_error and json.loads(result.text)["timezone"] == "Asia/Tokyo"
    wrong = connection.call("get_current_time", {"timezone": "Mars/Olympus"})
    assert wrong.is_error and "Mars/Olympus" in wrong.text
    connection.close()
    with pytest.raises(McpError, match="not running"):
        connection.call("get_current_time", {"timezone": "UTC"})
    running = subprocess.run(["pgrep", "-f", "mcp_server_time"], capture_output=True)
    assert running.returncode == 1, "the server process outlived its connection"


def test_a_server_that_crashes_or_does_not_exist_is_named(tmp_path: Path) -> None:
    for server in (_hostile("crash"), McpServer.from_command("no-such-mcp-server-xyz")):
        with pytest.raises(McpError, match="could not start"):
            McpConnection(server, tmp_path).start()


def test_a_server_that_never_answers_times_out(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mcp_client, "START_TIMEOUT_S", 3.0)
    with pytest.raises(McpError, match="did not start within 3 s"):
        McpConnection(_hostile("silent"), tmp_path).start()


def test_hostile_results_are_cut_failed_or_timed_out(tmp_path: Path) -> None:
    connection = McpConnection(_hostile("flood"), tmp_path)
    try:
        connection.start()
        assert connection.log_path.stat().st_size > 1_000_000  # stderr went to its log
        huge = connection.call("huge", {})
        assert len(huge.text) < MAX_RESULT_CHARS + 200 and "[cut: the tool returned" in huge.text
        assert "<script>" in connection.call("markup", {}).text  # kept as text, shown plain
        assert connection.call("boom", {}).is_error
        with pytest.raises(McpError, match="did not run hang within 2 s"):
            connection.call("hang", {}, timeout=2.0)
        assert not connection.call("markup", {}).is_error  # the server still serves
    finally:
        connection.close()


def test_a_stopped_call_ends_at_once_and_the_server_serves_on(tmp_path: Path) -> None:
    """The person's Stop cancels the call's task in the portal: the waiting thread
    returns, well before the call's deadline, and the same server answers the next call."""
    box = Toolbox([_hostile("serve")], tmp_path)
    box.start()
    connection = box.connections["hostile-serve"]
    stop, done = CallStop(), threading.Event()
    outcome: list[ToolStep] = []

    def call() -> None:
        outcome.append(box.run(ToolStep(ToolCall("c1", "hang", "{}")), stop))
        done.set()

    try:
        threading.Thread(target=call, name="hang-call", daemon=True).start()
        assert not done.wait(0.5)  # it hangs
        stop.stop()
        assert done.wait(10), "a stopped call still waited (the deadline is 60 s)"
        assert outcome[0].state is StepState.STOPPED
        assert not connection.call("markup", {}).is_error  # the server still serves
        early = CallStop()
        early.stop()  # asked before the call reached the server
        with pytest.raises(CallStopped):
            connection.call("markup", {}, stop=early)
    finally:
        box.close()


def test_the_toolbox_runs_allowed_calls_and_keeps_going_without_a_broken_server(
        tmp_path: Path) -> None:
    box = Toolbox([TIME, _hostile("crash")], tmp_path)
    try:
        offer = box.start()
        assert offer.servers["get_current_time"] == "mcp_server_time"
        assert any("hostile-crash" in p for p in box.problems)
        step = box.run(ToolStep(ToolCall("c1", "get_current_time", '{"timezone": "UTC"}')))
        assert step.state is StepState.RAN and "UTC" in step.result
        bad = box.run(ToolStep(ToolCall("c2", "get_current_time", "not json")))
        assert bad.state is StepState.FAILED and "not JSON" in bad.result
        assert box.needs_asking(step)
        box.always_allow("get_current_time")
        assert not box.needs_asking(step)
    finally:
        box.close()


def test_unusable_definitions_are_left_out_with_the_reason() -> None:
    class Listed:
        def __init__(self, name: str, schema: object) -> None:
            self.name, self.description, self.input_schema = name, "", schema

    tools, skipped = usable_tools([Listed("ok", {"type": "object"}),
                                   Listed("bad name!", {"type": "object"}),
                                   Listed("notschema", {"hello": 1})])
    assert [t.name for t in tools] == ["ok"] and len(skipped) == 2


def test_added_servers_are_kept_and_a_damaged_list_is_set_aside(tmp_path: Path) -> None:
    servers = ServerList(tmp_path)
    servers.add(ServerEntry("time", command="python -m mcp_server_time"))
    with pytest.raises(McpError, match="already"):
        servers.add(ServerEntry("time", command="python -m other"))
    with pytest.raises(McpError, match="only local URLs"):
        servers.add(ServerEntry("far", url="https://example.com/mcp"))
    assert [e.name for e in ServerList(tmp_path).entries()] == ["time"]
    servers.path.write_text("{not json")
    fresh = ServerList(tmp_path)
    assert fresh.entries() == [] and "set aside" in fresh.notices[0]


def test_hearth_chat_with_mcp_calls_the_tool_and_answers(tmp_path: Path,
                                                         starter_gguf: Path) -> None:
    """The terminal flow: a required first call, approved, run, and the model answers."""
    env = {"HEARTH_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "app.cli.main", "chat", "-p", "What time is it in Tokyo?",
         "--mcp", "python -m mcp_server_time --local-timezone UTC", "--tool-choice",
         "required", "--temperature", "0", "--max-tokens", "150"],
        cwd=ROOT, env=env, input="o\n", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "[tool call] " in done.stderr and "Allow?" in done.stdout + done.stderr
    assert "[result]" in done.stderr or "[failed]" in done.stderr
