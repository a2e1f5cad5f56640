"""The model library: imports that validate first and leave nothing behind on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.library import LibraryError, UnknownModel
from app.workspace import Workspace, open_workspace
from tests.gguf_factory import write_tiny_gguf


def test_import_copies_lists_and_removes(workspace: Workspace, tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "my-model.gguf")
    record = workspace.library.import_file(source)
    assert record.name == "my-model"
    assert record.path.parent == workspace.home.models
    assert record.path.read_bytes() == source.read_bytes()
    assert [r.name for r in workspace.library.list()] == ["my-model"]
    assert workspace.library.get("my-model").info["architecture"] == "llama"
    second = workspace.library.import_file(source)
    assert second.name == "my-model-2"
    workspace.library.remove("my-model")
    assert not record.path.exists()
    assert source.exists()
    with pytest.raises(UnknownModel, match="my-model"):
        workspace.library.get("my-model")


@pytest.mark.parametrize("content", [b"", b"not a model", b"GGUF\x03\x00\x00\x00"])
def test_refused_import_registers_nothing(workspace: Workspace, tmp_path: Path,
                                          content: bytes) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(content)
    with pytest.raises(LibraryError, match="cannot import bad.gguf"):
        workspace.library.import_file(bad)
    assert workspace.library.list() == []
    assert list(workspace.home.models.iterdir()) == []


def test_starter_is_registered_once_and_never_deleted(home_dir: Path,
                                                      starter_gguf: Path) -> None:
    ws = open_workspace(home_dir)
    try:
        starters = [r for r in ws.library.list() if r.source == "starter"]
        assert len(starters) == 1 and starters[0].path == starter_gguf.resolve()
        assert ws.library.default() == starters[0]
    finally:
        ws.close()
    ws = open_workspace(home_dir)
    try:
        assert len(ws.library.list()) == 1
        ws.library.remove(starters[0].name)
        assert starter_gguf.exists()
    finally:
        ws.close()
