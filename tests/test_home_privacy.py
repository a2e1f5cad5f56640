"""The data folder is private and its fixed names are never followed as links (finding
S12 of issue 24): conversations were 0644 beside a 0600 key, and a link planted as
``hearth.lock`` or ``server-api-key`` made Hearth overwrite, read or chmod its target."""

from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.serve.security import KEY_ENV, api_key, key_path
from app.workspace import open_workspace

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture(autouse=True)
def common_umask() -> Iterator[None]:
    """The umask most people have (022): what made the folder world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_home_is_owner_only(home_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    ws = open_workspace(home_dir, register_starter=False, lock="the Hearth app")
    try:
        conversation = ws.store.create(title="private")
        ws.store.add_message(conversation.id, "user", "my secret")
        ws.save_settings()
        api_key(home_dir)
        assert _mode(home_dir) == 0o700
        for name in ("hearth.db", "hearth.db-wal", "hearth.lock", "settings.json",
                     "server-api-key"):
            assert _mode(home_dir / name) == 0o600, name
    finally:
        ws.close()


def test_an_existing_home_is_tightened(home_dir: Path) -> None:
    ws = open_workspace(home_dir, register_starter=False)
    ws.close()
    home_dir.chmod(0o755)
    (home_dir / "hearth.db").chmod(0o644)
    ws = open_workspace(home_dir, register_starter=False)
    try:
        assert _mode(home_dir) == 0o700 and _mode(home_dir / "hearth.db") == 0o600
    finally:
        ws.close()


def test_a_folder_of_the_persons_is_not_tightened(tmp_path: Path) -> None:
    """$HEARTH_HOME pointed at a folder that holds other things: Hearth's files are
    private, the folder's own mode is the person's business."""
    mine = tmp_path / "documents"
    mine.mkdir(mode=0o755)
    (mine / "notes.txt").write_text("mine")
    ws = open_workspace(mine, register_starter=False)
    try:
        assert _mode(mine) == 0o755 and _mode(mine / "hearth.db") == 0o600
    finally:
        ws.close()


def test_a_link_as_the_lock_is_refused_and_its_target_untouched(home_dir: Path,
                                                               tmp_path: Path) -> None:
    open_workspace(home_dir, register_starter=False).close()
    target = tmp_path / "precious.txt"
    target.write_text("do not overwrite")
    (home_dir / "hearth.lock").unlink(missing_ok=True)
    (home_dir / "hearth.lock").symlink_to(target)
    with pytest.raises(OSError, match="symbolic link"):
        open_workspace(home_dir, register_starter=False, lock="hearth models rm")
    assert target.read_text() == "do not overwrite"


def test_a_link_as_the_key_is_not_read_nor_chmodded(home_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    home_dir.mkdir(mode=0o700)
    target = tmp_path / "someones-file"
    target.write_text("hearth-not-the-key-but-someones-file-content\n")
    target.chmod(0o644)
    key_path(home_dir).symlink_to(target)
    notices: list[str] = []
    key = api_key(home_dir, notices)
    assert key != target.read_text().strip() and key.startswith("hearth-")
    assert _mode(target) == 0o644 and target.read_text().startswith("hearth-not-the-key")
    assert not key_path(home_dir).is_symlink() and _mode(key_path(home_dir)) == 0o600
    assert "symbolic link" in notices[0] and "new API key" in notices[0]
