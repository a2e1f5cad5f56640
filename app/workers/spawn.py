"""How Hearth starts a child process: from where, with what, and the child's end.

Every child runs ``python -m <module>`` from the folder that holds ``app/`` and
``backends/``, with that folder on its ``PYTHONPATH``, so a child imports the same code as
its parent whether Hearth runs from a checkout or an install. Long-lived workers are
watched by :mod:`app.workers.supervisor`; one-shot children (a GGUF check, a benchmark
baseline, the doctor's self-test) run to their end through :func:`run_module`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from multiprocessing.connection import Client, Connection
from pathlib import Path

# The folder that holds app/ and backends/: children run from here, with it on their path.
ROOT = Path(__file__).resolve().parents[2]
AUTHKEY_ENV = "HEARTH_WORKER_AUTHKEY"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment, plus this checkout on ``PYTHONPATH`` and unbuffered
    output (a child's last lines must reach its log before it dies)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(extra or {}))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def module_command(module: str, args: Sequence[str] = ()) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_module(module: str, args: Sequence[str] = (), *, timeout: float | None = None,
               env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a one-shot child to its end and return what it printed.

    A child that runs past ``timeout`` is killed and reported as exit code 124 with
    "timed out" as its stderr, so callers handle one kind of result.
    """
    try:
        return subprocess.run(module_command(module, args), stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, env=child_env(env), cwd=ROOT,
                              check=False, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, 124, "", f"timed out after {timeout:.0f} s")


def connect_to_supervisor(address: str) -> Connection:
    """The child's end of a ``"socket"`` channel: connect with the key its parent gave it
    (and take the key out of the environment, so its own children never see it)."""
    authkey = bytes.fromhex(os.environ.pop(AUTHKEY_ENV))
    return Client(address, authkey=authkey)
