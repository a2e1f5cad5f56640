"""Which model the chat loads for a base (app/models/versions.py): its active taught
version, else the base; a truncated or damaged versions.json is kept aside and the chat
loads the base, never a crash; the chat's pointer changes keep Teach's records whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.errors import ExitCode, HearthError
from app.models.versions import ActiveVersions, UnknownVersion, chat_model, versions_file
from app.teach.versions import VersionStore
from app.workspace import Workspace
from tests.gguf_factory import write_tiny_gguf

BASE, TAUGHT = "base-model", "base-model-taught-1"
# A version as Teach writes it (app.teach.versions.Version), settings and report trimmed.
VERSION = {"name": TAUGHT, "base": BASE, "run_id": "r1", "created_at": "2026-12-07",
           "corrections": [1], "extra": None, "settings": {}, "report": {},
           "accepted": True, "continued_from": None}


def _home_with_a_version(ws: Workspace, tmp_path: Path) -> str:
    ws.library.register(write_tiny_gguf(tmp_path / "base.gguf"), BASE)
    ws.library.register(write_tiny_gguf(tmp_path / "v1.gguf", seed=1), TAUGHT)
    text = json.dumps({"bases": {BASE: {"active": TAUGHT, "versions": [VERSION]}}}, indent=2)
    versions_file(ws.home).parent.mkdir(parents=True, exist_ok=True)
    versions_file(ws.home).write_text(text)
    return text


def test_a_truncated_versions_file_loads_the_base_and_is_kept_aside(
        workspace: Workspace, tmp_path: Path) -> None:
    text = _home_with_a_version(workspace, tmp_path)
    notices: list[str] = []
    chat = ActiveVersions(workspace.home, notices)
    base = workspace.library.get(BASE)
    assert chat_model(workspace.library, chat, base).name == TAUGHT
    assert chat.base_of(TAUGHT) == BASE and chat.base_of(BASE) is None

    path = versions_file(workspace.home)
    path.write_text(text[: len(text) // 2])  # cut off mid-write
    assert chat_model(workspace.library, chat, base).name == BASE
    kept = [p for p in path.parent.iterdir() if p.name.startswith("versions.json.bad-")]
    assert len(kept) == 1 and kept[0].read_text() == text[: len(text) // 2]
    assert any("versions.json could not be read" in n for n in notices), notices
    chat.activate(BASE, None)  # and the chat can choose again
    assert chat.active(BASE) is None


def test_the_chats_choice_keeps_teachs_records_and_refuses_unknown_names(
        workspace: Workspace, tmp_path: Path) -> None:
    _home_with_a_version(workspace, tmp_path)
    chat = ActiveVersions(workspace.home)
    chat.activate(BASE, None)  # roll back to the base
    assert chat.active(BASE) is None and VersionStore(workspace.home).active(BASE) is None
    [kept] = VersionStore(workspace.home).versions(BASE)
    assert kept.name == TAUGHT and kept.run_id == "r1"  # Teach's record, whole
    with pytest.raises(UnknownVersion, match="not a version of base-model") as refused:
        chat.activate(BASE, "something-else")
    assert isinstance(refused.value, HearthError)
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    chat.activate(BASE, TAUGHT)
    assert VersionStore(workspace.home).active(BASE) == TAUGHT
