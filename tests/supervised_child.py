"""A tiny worker for tests/test_supervisor.py: ``python -m tests.supervised_child CHANNEL PLAN``.

It speaks the lifecycle events (:mod:`app.workers.lifecycle`) over either channel the
supervisor offers, writes a line of log to stderr, and then obeys ``Log("command", ...)``
messages: ``echo TEXT`` answers ``Log("echo", TEXT)``, ``exit N`` exits with that code,
``crash`` dies of SIGSEGV, ``bye`` ends quietly. PLAN bends the start: ``late`` waits a
second before connecting, ``wrong-key`` connects with a key of its own, ``old-version``
says hello in protocol 99.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Client
from typing import Any

from app.workers.lifecycle import Error, Hello, Log
from app.workers.spawn import connect_to_supervisor
from app.workers.wire import from_json, to_json

PROTOCOL_VERSION = 1
_BY_KIND: dict[str, type] = {cls.kind: cls for cls in (Hello, Log, Error)}


def decode(data: bytes) -> Any:
    return from_json(data.decode("utf-8"), _BY_KIND)


def encode(message: Any) -> bytes:
    return to_json(message).encode("utf-8")


def _socket(address: str) -> tuple[Callable[[Any], None], Iterator[Any]]:
    conn = connect_to_supervisor(address)

    def commands() -> Iterator[Any]:
        while True:
            try:
                yield decode(conn.recv_bytes())
            except EOFError:
                return

    return (lambda message: conn.send_bytes(encode(message))), commands()


def _pipe() -> tuple[Callable[[Any], None], Iterator[Any]]:
    def send(message: Any) -> None:
        sys.stdout.write(to_json(message) + "\n")
        sys.stdout.flush()

    return send, (decode(line.encode("utf-8")) for line in sys.stdin if line.strip())


def main() -> None:
    channel, plan = sys.argv[1], sys.argv[2]
    if plan == "wrong-key":
        Client(sys.argv[3], authkey=b"a key of my own")  # refused: raises
        return
    if plan == "late":
        time.sleep(1.0)
    send, commands = _socket(sys.argv[3]) if channel == "socket" else _pipe()
    version = 99 if plan == "old-version" else PROTOCOL_VERSION
    send(Hello(version, os.getpid()))
    print(f"child {os.getpid()}: started", file=sys.stderr, flush=True)
    send(Log("info", "ready"))
    for command in commands:
        verb, _, rest = command.message.partition(" ")
        if verb == "echo":
            send(Log("echo", rest))
        elif verb == "exit":
            print(f"child: exiting with code {rest}", file=sys.stderr, flush=True)
            sys.exit(int(rest))
        elif verb == "crash":
            print("child: about to crash", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGSEGV)
        elif verb == "bye":
            return


if __name__ == "__main__":
    main()
