"""A damaged side file no longer stops the app from opening (finding S6 of issue 24).

Each damage of the review (probes/gui_start.py) is written into a home, then the window
is built as ``run_app`` builds it (offscreen; no worker started). Like a damaged
``hearth.db``: the file is kept aside as ``<name>.bad-<time>``, Hearth starts that part
clean and the person is told ("Hearth repaired its data folder"). Side files are also
written the durable way (fsynced, renamed) and owner-only.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from pathlib import Path

import pytest

from app.finetune.settings import LoraSettings
from app.serve.security import KEY_ENV, key_path
from app.teach.records import GateReport
from app.teach.versions import Version, VersionStore
from app.workspace import open_workspace

STARTER = "SmolLM2-135M-Instruct"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


DAMAGE: dict[str, dict[str, bytes]] = {
    "versions.json not JSON": {"teach/versions.json": b"{not json"},
    "versions.json a list": {"teach/versions.json": b"[]"},
    "versions.json bases a list": {"teach/versions.json": b'{"bases": []}'},
    "a version missing fields": {"teach/versions.json": json.dumps(
        {"bases": {STARTER: {"active": "x", "versions": [{"name": "x"}]}}}).encode()},
    "versions.json not UTF-8": {"teach/versions.json": b"\xff\xfe{}"},
    "a model's sampling not an object": {"settings.json": json.dumps(
        {"sampling_by_model": {STARTER: "x"}}).encode()},
    "window state of the wrong type": {"settings.json": json.dumps(
        {"ui": {"geometry": 5, "chat_splitter": ["wide", "narrow"]}}).encode()},
    "kernels.json not records": {"kernels.json": b'{"machine": "safe"}'},
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_the_window_opens_and_says_what_was_kept_aside(qtbot, home_dir: Path,
                                                       case: str) -> None:
    from ui.main_window import MainWindow

    (name, damaged), = DAMAGE[case].items()
    target = home_dir / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(damaged)
    ws = open_workspace(home_dir, lock="the Hearth app")
    try:
        window = MainWindow(ws)  # raised before: the app did not open at all
        qtbot.addWidget(window)
        window.close()
        kept = [p for p in target.parent.iterdir() if p.name.startswith(f"{target.name}.bad-")]
        assert len(kept) == 1 and kept[0].read_bytes() == damaged
        assert not target.exists() or target.read_bytes() != damaged
        assert any(f"{target.name} could not be read" in n and kept[0].name in n
                   for n in ws.notices), ws.notices
    finally:
        ws.close()


def test_a_damaged_server_key_is_replaced_and_said(qtbot, home_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from ui import application
    from ui.main_window import MainWindow

    monkeypatch.delenv(KEY_ENV, raising=False)
    home_dir.mkdir(parents=True)
    (home_dir / "settings.json").write_text(json.dumps(
        {"ui": {"server_on": True, "server_port": _free_port()}}))
    key_path(home_dir).write_bytes(b"\xff\xfe\x00\x01")
    ws = open_workspace(home_dir, lock="the Hearth app")
    shown: list[str] = []
    monkeypatch.setattr(application, "message", lambda icon, title, text, *a, **k:
                        shown.append(f"{title}: {text}"))
    try:
        window = MainWindow(ws)
        qtbot.addWidget(window)
        panel = window.server_button.panel
        assert panel.server is not None  # the server came on, with a new key
        key = key_path(home_dir).read_text().strip()
        assert key.startswith("hearth-") and panel.key.text() == key
        assert "server-api-key could not be read" in panel.status.text()
        application.show_notices(ws, window)  # what run_app does once the window is built
        assert len(shown) == 1 and shown[0].startswith("Hearth repaired its data folder")
        assert "server-api-key.bad-" in shown[0] and "new API key" in shown[0]
        window.close()
    finally:
        ws.close()


def test_versions_are_written_durably_and_privately(home_dir: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("reads descriptors' paths from /proc")
    ws = open_workspace(home_dir, register_starter=False)
    synced: set[Path] = set()
    real = os.fsync

    def spy(fd: int) -> None:
        synced.add(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    try:
        store = VersionStore(ws.home)
        store.add(Version("b-taught-1", "b", "r1", "2026-12-07", [1], None, LoraSettings(),
                          GateReport()),
                  activate=True)
        assert store.active("b") == "b-taught-1"
        folder = store.path.parent
        assert folder in synced and any(p.parent == folder and p.name.endswith(".tmp")
                                        for p in synced)
        assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
        ws.save_settings()
        assert stat.S_IMODE(ws.home.settings_file.stat().st_mode) == 0o600
    finally:
        ws.close()
