"""Auto threads leave the cores that Hearth's other heavy work holds."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from app.machine.threads import ThreadClaims, auto_threads, physical_cores


def _claim_in_child(folder: Path, threads: int) -> subprocess.Popen[str]:
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from app.machine.threads import ThreadClaims
        with ThreadClaims(Path({str(folder)!r})).claim("training", {threads}):
            print("claimed", flush=True)
            sys.stdin.read()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
    return proc


def test_a_training_claim_lowers_auto_threads_until_it_ends(tmp_path: Path) -> None:
    claims = ThreadClaims(tmp_path / "busy")
    assert auto_threads(claims) == physical_cores()
    child = _claim_in_child(tmp_path / "busy", 1)
    try:
        assert claims.held_by_others() == 1
        assert auto_threads(claims) == max(1, physical_cores() - 1)
    finally:
        child.communicate("")
    assert claims.held_by_others() == 0 and auto_threads(claims) == physical_cores()


def test_a_claim_of_a_killed_process_is_swept(tmp_path: Path) -> None:
    claims = ThreadClaims(tmp_path / "busy")
    child = _claim_in_child(tmp_path / "busy", 64)
    assert auto_threads(claims) == 1  # never below one
    child.kill()
    child.wait()
    deadline = time.monotonic() + 5
    while claims.held_by_others() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert claims.held_by_others() == 0
    assert not list((tmp_path / "busy").glob("*.json"))


def test_own_claims_do_not_count(tmp_path: Path) -> None:
    claims = ThreadClaims(tmp_path / "busy")
    with claims.claim("training", 8):
        assert claims.held_by_others() == 0
