"""The worker supervisor, on a real (tiny) child process: tests/supervised_child.py.

It must bring a child up over an authenticated channel, pass its events on, report its
death with the exit code or signal and its last lines, start a fresh one, and refuse a
connection that does not know the key or a child of another protocol version.
"""

from __future__ import annotations

import os
import queue
import signal
import threading
import time
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client
from pathlib import Path
from typing import Any

import pytest

from app.workers.lifecycle import Hello, Log, WorkerDied
from app.workers.spawn import run_module
from app.workers.supervisor import Supervisor, WorkerGone, WorkerSpec, WorkerStartError
from tests import supervised_child as child

ADVICE = "Start it again to go on."
END = "ended"


class Watcher:
    """The supervisor's two callbacks, as one queue the test reads in order."""

    def __init__(self) -> None:
        self.seen: queue.Queue[Any] = queue.Queue()

    def on_event(self, event: Any) -> None:
        self.seen.put(event)

    def on_end(self, died: WorkerDied | None) -> None:
        self.seen.put(died if died is not None else END)

    def next(self, timeout: float = 20.0) -> Any:
        return self.seen.get(timeout=timeout)

    def echoed(self, timeout: float = 20.0) -> str:
        """The text of the next echo (a Log of level "echo"), skipping other events."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.until(Log, max(0.01, deadline - time.monotonic()))
            if item.level == "echo":
                return item.message

    def until(self, wanted: type | str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(max(0.01, deadline - time.monotonic()))
            if item == wanted if isinstance(wanted, str) else isinstance(item, wanted):
                return item


def _supervisor(channel: str, plan: str = "plain", log_file: Path | None = None,
                timeout: float = 20.0) -> tuple[Supervisor, Watcher]:
    watcher = Watcher()
    spec = WorkerSpec("tests.supervised_child", (channel, plan), name="test worker",
                      advice=ADVICE, protocol_version=child.PROTOCOL_VERSION,
                      channel=channel,  # type: ignore[arg-type]
                      log_file=log_file, start_timeout=timeout)
    return Supervisor(spec, child.decode, child.encode, watcher.on_event,
                      watcher.on_end), watcher


def _command(text: str) -> Log:
    return Log("command", text)


def test_a_socket_child_says_hello_answers_and_its_exit_code_is_reported(
        tmp_path: Path) -> None:
    log_file = tmp_path / "worker.log"
    sup, watch = _supervisor("socket", log_file=log_file)
    try:
        hello = sup.start()
        assert isinstance(hello, Hello) and sup.proc is not None
        assert hello.pid == sup.proc.pid and sup.alive
        assert watch.until(Log).message == "ready"
        sup.send(_command("echo over the wire"))
        assert watch.echoed() == "over the wire"
        sup.send(_command("exit 3"))
        died = watch.until(WorkerDied)
        assert died.exit_code == 3 and died.signal is None
        assert died.message == f"The test worker exited unexpectedly (exit code 3). {ADVICE}"
        assert "child: exiting with code 3" in died.last_log_lines
        assert any(line.endswith(": started") for line in died.last_log_lines)
        assert watch.seen.empty()  # one report, not two
        text = log_file.read_text()
        assert "child: exiting with code 3" in text
        assert f"hearth: worker {hello.pid} ended by exit code 3; last lines above" in text
        with pytest.raises(WorkerGone):
            sup.send(_command("echo anyone?"))
    finally:
        sup.close(goodbye=_command("bye"))


def test_death_by_signal_is_reported_and_a_restart_brings_a_fresh_child() -> None:
    sup, watch = _supervisor("socket")
    try:
        first = sup.start()
        assert isinstance(first, Hello)
        os.kill(first.pid, signal.SIGKILL)
        died = watch.until(WorkerDied)
        assert died.signal == signal.SIGKILL and died.exit_code is None
        assert "killed" in died.message and died.message.endswith(ADVICE)

        second = sup.restart()
        assert isinstance(second, Hello) and second.pid != first.pid and sup.alive
        sup.send(_command("crash"))
        crashed = watch.until(WorkerDied)
        assert crashed.signal == signal.SIGSEGV and "segmentation fault" in crashed.message
        assert crashed.last_log_lines[-1] == "child: about to crash"

        third = sup.restart()
        assert isinstance(third, Hello)
        sup.send(_command("echo still here"))
        assert watch.echoed() == "still here"
    finally:
        sup.close(goodbye=_command("bye"))
    # Closing is not a death: the end is reported, without a WorkerDied.
    assert watch.until(END) == END
    assert not sup.alive
    assert not any(isinstance(item, WorkerDied) for item in list(watch.seen.queue))


def test_a_pipe_child_reports_death_with_the_lines_it_logged_to_its_file(
        tmp_path: Path) -> None:
    log_file = tmp_path / "worker.log"
    log_file.write_text("an earlier run's last words\n")
    sup, watch = _supervisor("pipe", log_file=log_file)
    try:
        assert sup.start() is None  # a pipe child's Hello arrives as an event
        hello = watch.until(Hello)
        assert sup.proc is not None and hello.pid == sup.proc.pid
        sup.send(_command("echo down the pipe"))
        assert watch.echoed() == "down the pipe"
        sup.send(_command("exit 5"))
        died = watch.until(WorkerDied)
        assert died.exit_code == 5
        assert died.last_log_lines[-1] == "child: exiting with code 5"
        assert "ended by exit code 5" in log_file.read_text()

        # A child that said its last word is not reported dead, whatever its code.
        sup.start()
        watch.until(Hello)
        sup.expect_exit()
        sup.send(_command("exit 7"))
        assert watch.until(END) == END
        assert sup.wait(10) == 7
    finally:
        sup.close(goodbye=_command("bye"))
    assert not any(isinstance(item, WorkerDied) for item in list(watch.seen.queue))


def test_a_connection_with_a_wrong_key_is_refused_and_the_child_still_gets_in() -> None:
    sup, watch = _supervisor("socket", plan="late")
    refused: list[BaseException] = []

    def stranger() -> None:
        deadline = time.monotonic() + 10
        while sup.address is None and time.monotonic() < deadline:
            time.sleep(0.01)
        try:
            Client(sup.address, authkey=b"guessed")
        except AuthenticationError as exc:
            refused.append(exc)

    thread = threading.Thread(target=stranger)
    thread.start()
    try:
        hello = sup.start()  # the child connects a second after the stranger tried
        thread.join(10)
        assert refused, "a connection without the key was let in"
        assert isinstance(hello, Hello) and sup.proc is not None
        assert hello.pid == sup.proc.pid
        sup.send(_command("echo the right one"))
        assert watch.echoed() == "the right one"
    finally:
        sup.close(goodbye=_command("bye"))


def test_a_child_with_the_wrong_key_or_protocol_does_not_start() -> None:
    sup, _ = _supervisor("socket", plan="wrong-key")
    with pytest.raises(WorkerStartError) as info:
        sup.start()
    assert info.value.error.error_kind == "start_failed"
    assert "AuthenticationError" in info.value.error.message
    assert not sup.alive

    sup, watch = _supervisor("socket", plan="old-version")
    with pytest.raises(WorkerStartError) as info:
        sup.start()
    assert info.value.error.error_kind == "protocol"
    assert "speaks protocol 99, this app speaks 1" in info.value.error.message
    assert not sup.alive

    sup, watch = _supervisor("pipe", plan="old-version")
    sup.start()
    refusal = watch.until(type(info.value.error))
    assert refusal.error_kind == "protocol" and "speaks protocol 99" in refusal.message
    assert watch.until(END) == END  # refused and ended, not reported as a death
    assert not sup.alive


def test_a_child_that_never_connects_is_given_up_on_in_time() -> None:
    # The child connects after 1 s: a start that waited past its 0.3 s would succeed.
    sup, _ = _supervisor("socket", plan="late", timeout=0.3)
    with pytest.raises(WorkerStartError, match="did not start"):
        sup.start()
    assert not sup.alive


def test_a_one_shot_child_runs_from_the_root_and_a_stuck_one_is_stopped() -> None:
    done = run_module("tests.supervised_child", ["pipe", "plain"])
    # stdin is not a terminal but empty: the child says hello and ends.
    assert done.returncode == 0 and '"kind": "hello"' in done.stdout
    stuck = run_module("tests.supervised_child", ["socket", "late", "/nonexistent"],
                       timeout=0.2)
    assert stuck.returncode == 124 and "timed out" in stuck.stderr


def test_both_protocols_use_the_one_set_of_lifecycle_events_with_their_old_tags() -> None:
    from app.finetune import protocol as tp
    from app.inference import protocol as p
    from app.workers import lifecycle

    assert p.Log is tp.Log is lifecycle.Log
    assert p.Error is tp.Error is lifecycle.Error
    assert p.WorkerDied is tp.WorkerDied is lifecycle.WorkerDied
    assert issubclass(p.Hello, lifecycle.Hello) and issubclass(tp.TrainHello, lifecycle.Hello)
    # Lines written before the events were shared (events.jsonl of old runs) still read.
    assert tp.decode('{"error_kind": "bad_data", "message": "no rows", "kind": "error"}'
                     ) == tp.Error("bad_data", "no rows")
    old_hello = ('{"protocol_version": 1, "pid": 7, "run_id": "r", "device": "cpu", '
                 '"dtype": "float32", "torch_version": "2", "resumed_from_step": 0, '
                 '"kind": "hello"}')
    assert tp.decode(old_hello) == tp.TrainHello(1, 7, "r", "cpu", "float32", "2")
    assert p.decode(b'{"level": "WARNING", "message": "m", "kind": "log"}') == p.Log(
        "WARNING", "m")
    died = lifecycle.WorkerDied.from_exit("model worker", -signal.SIGABRT, ["a", "b"],
                                          "Reload.", ["tried once"])
    assert died.signal == signal.SIGABRT and died.exit_code is None
    assert died.message == ("The model worker stopped: it aborted (an internal check "
                            "failed). Hearth already tried once. Reload.")
