"""One data folder, many openers: concurrent first starts, a damaged or locked database,
a second instance, a damaged settings file (issue 11 F7, F14, F15 and settings)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import db
from app.home_lock import HomeLocked
from app.workspace import open_workspace

ROOT = Path(__file__).resolve().parent.parent


def _env(home: Path) -> dict[str, str]:
    return dict(os.environ, HEARTH_HOME=str(home),
                PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT),
                                                         os.environ.get("PYTHONPATH")])))


def hearth(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], cwd=ROOT,
                          env=_env(home), capture_output=True, text=True, timeout=120,
                          check=False)


# --------------------------------------------------------------------------- F7

_STARTER = """
import sys, time
from app.cli.main import main
start = float(sys.argv[1])
while time.time() < start:
    time.sleep(0.001)
sys.exit(main(["models", "list", "--json"]))
"""


def test_processes_starting_at_once_on_a_fresh_folder_all_succeed(
        tmp_path: Path, starter_gguf: Path) -> None:
    """Eight processes open a fresh folder at the same instant (imports done first, then
    a shared start time): every one runs the migration and the starter registration
    race, every one must succeed, and the starter must be listed exactly once."""
    home = tmp_path / "home"
    home.mkdir()
    start = time.time() + 4.0
    procs = [subprocess.Popen([sys.executable, "-c", _STARTER, str(start)], cwd=ROOT,
                              env=_env(home), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    outcomes = [p.communicate(timeout=120) + (p.returncode,) for p in procs]
    for out, err, code in outcomes:
        assert code == 0, err
        assert "Traceback" not in err
        listed = json.loads(out)
        assert [m["source"] for m in listed] == ["starter"], listed
    ws = open_workspace(home)
    try:
        assert [r.source for r in ws.library.list()] == ["starter"]
    finally:
        ws.close()


# -------------------------------------------------------------------------- F14


def test_a_damaged_database_is_kept_aside_and_a_fresh_one_started(home_dir: Path) -> None:
    ws = open_workspace(home_dir, register_starter=False)
    ws.store.create("kept?")
    ws.close()
    damaged = bytes(range(256)) * 64
    (home_dir / "hearth.db").write_bytes(damaged)
    for suffix in ("-wal", "-shm"):
        (home_dir / f"hearth.db{suffix}").unlink(missing_ok=True)
    ws = open_workspace(home_dir, register_starter=False)
    try:
        assert ws.store.list() == []
        assert len(ws.notices) == 1 and "hearth.db was damaged" in ws.notices[0]
        kept = [p for p in home_dir.iterdir() if p.name.startswith("hearth.db.damaged-")]
        assert len(kept) == 1 and kept[0].read_bytes() == damaged
        assert kept[0].name in ws.notices[0]
    finally:
        ws.close()


def test_the_cli_says_the_database_was_damaged_without_a_traceback(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "hearth.db").write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    result = hearth(home, "models", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "hearth.db was damaged" in result.stderr and "damaged-" in result.stderr
    # The fresh database the command went on with: only the starter, registered anew.
    assert [m["source"] for m in json.loads(result.stdout)] == ["starter"]


def test_a_locked_database_is_a_clear_error(home_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home_dir.mkdir(parents=True)
    other = sqlite3.connect(home_dir / "hearth.db", isolation_level=None)
    other.execute("CREATE TABLE t (x)")
    other.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(db, "BUSY_TIMEOUT_S", 0.3)
    try:
        with pytest.raises(db.DatabaseBusy, match="locked by another program.*try again"):
            open_workspace(home_dir, register_starter=False)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert not any(p.name.startswith("hearth.db.damaged") for p in home_dir.iterdir())
    ws = open_workspace(home_dir, register_starter=False)  # once released, it opens
    ws.close()


# -------------------------------------------------------------------------- F15

_HOLDER = """
import sys, time
from app.workspace import open_workspace
ws = open_workspace(sys.argv[1], register_starter=False, lock="the Hearth app")
print("ready", flush=True)
sys.stdin.readline()
"""


def _holder(home: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(home)], cwd=ROOT,
                            env=_env(home), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_a_second_instance_is_told_which_process_holds_the_folder(home_dir: Path,
                                                                  tmp_path: Path) -> None:
    from tests.gguf_factory import write_tiny_gguf

    holder = _holder(home_dir)
    try:
        with pytest.raises(HomeLocked, match=f"process {holder.pid} \\(the Hearth app\\)"):
            open_workspace(home_dir, lock="the Hearth app")
        model = write_tiny_gguf(tmp_path / "m.gguf")
        result = hearth(home_dir, "models", "import", str(model))
        assert result.returncode == 1
        assert f"in use by another Hearth, process {holder.pid}" in result.stderr
        assert "Traceback" not in result.stderr
        listed = hearth(home_dir, "models", "list", "--json")  # reading is fine
        assert listed.returncode == 0, listed.stderr
        assert "m" not in [m["name"] for m in json.loads(listed.stdout)]  # nothing imported
    finally:
        holder.communicate("\n", timeout=30)
    # The holder has gone, so its lock went with it.
    result = hearth(home_dir, "models", "import", str(model))
    assert result.returncode == 0, result.stderr
    assert "m" in [m["name"] for m in json.loads(hearth(home_dir, "models", "list",
                                                        "--json").stdout)]


def test_the_lock_is_reentrant_in_one_process_and_released_on_close(home_dir: Path) -> None:
    first = open_workspace(home_dir, register_starter=False, lock="test")
    second = open_workspace(home_dir, register_starter=False, lock="test")  # no HomeLocked
    second.close()
    assert _locked_elsewhere(home_dir)  # the first still holds it
    first.close()
    assert not _locked_elsewhere(home_dir)
    holder = _holder(home_dir)  # another process can take it now: it says "ready"
    holder.communicate("\n", timeout=30)


def _locked_elsewhere(home: Path) -> bool:
    """Whether a new open of the lock file (another holder, as far as flock is
    concerned, even in this process) is refused the lock."""
    import fcntl

    fd = os.open(home / "hearth.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # and with it any lock this took
    return False


def test_the_gui_refuses_a_second_window_with_the_holders_pid(qtbot, home_dir: Path) -> None:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    from ui.application import open_for_gui

    holder = _holder(home_dir)
    seen: list[str] = []

    def close_box() -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox):
            seen.append(box.text())
            box.done(QMessageBox.StandardButton.Ok)
        else:
            QTimer.singleShot(50, close_box)

    try:
        QTimer.singleShot(50, close_box)
        assert open_for_gui(str(home_dir)) is None
    finally:
        holder.communicate("\n", timeout=30)
    assert seen and f"process {holder.pid}" in seen[0]


# --------------------------------------------------------------------- settings


def test_a_damaged_settings_file_is_kept_aside_and_reported(home_dir: Path) -> None:
    ws = open_workspace(home_dir, register_starter=False)
    ws.settings.load.n_ctx = 2048
    ws.save_settings()
    ws.close()
    bad = '{"load": {"n_ctx": 2048}, oops'
    (home_dir / "settings.json").write_text(bad)
    ws = open_workspace(home_dir, register_starter=False)
    try:
        assert ws.settings.load.n_ctx == 4096  # the defaults, this time
        kept = [p for p in home_dir.iterdir() if p.name.startswith("settings.json.bad-")]
        assert len(kept) == 1 and kept[0].read_text() == bad
        assert any("settings.json could not be read" in n and kept[0].name in n
                   for n in ws.notices)
    finally:
        ws.close()
