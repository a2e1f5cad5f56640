"""The model library: imports that validate first and leave nothing behind on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.models.library import LibraryError, UnknownModel
from app.workspace import Workspace, open_workspace
from tests.gguf_factory import write_tiny_gguf


def test_import_copies_lists_and_removes(workspace: Workspace, tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "my-model.gguf")
    record = workspace.library.import_file(source)
    assert record.name == "my-model"
    assert record.path.parent == workspace.home.models
    assert record.path.read_bytes() == source.read_bytes()
    assert [r.name for r in workspace.library.list()] == ["my-model"]
    assert workspace.library.get("my-model").info.architecture == "llama"
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


def _sha(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_imports_of_one_file_name_at_once_keep_each_file_whole(
        workspace: Workspace, tmp_path: Path) -> None:
    """Issue 11 F2: a drop of two ``ggml-model-Q4_K_M.gguf`` from different folders.

    Both copies are held at a barrier after their first chunk, so they really overlap;
    each registered file must be byte for byte its own source."""
    import contextlib
    import threading

    a = write_tiny_gguf(tmp_path / "a" / "ggml-model-Q4_K_M.gguf", seed=1, pad_to=40_000)
    b = write_tiny_gguf(tmp_path / "b" / "ggml-model-Q4_K_M.gguf", seed=2, pad_to=20_000)
    barrier = threading.Barrier(2, timeout=10)
    results: dict[Path, object] = {}

    def run(source: Path) -> None:
        def progress(done: int, total: int) -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
        try:
            results[source] = workspace.library.import_file(source, progress=progress)
        except Exception as exc:  # the test reports what happened
            results[source] = exc

    threads = [threading.Thread(target=run, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    records = {source: results[source] for source in (a, b)}
    for source, record in records.items():
        assert not isinstance(record, Exception), f"{source}: {record!r}"
        assert _sha(record.path) == _sha(source)
        assert record.provenance.sha256 == _sha(source)
    assert len({r.name for r in records.values()}) == 2
    assert len({r.path for r in records.values()}) == 2
    assert sorted(p.name for p in workspace.home.models.iterdir()) == sorted(
        r.path.name for r in records.values())


def test_a_failed_import_leaves_no_file_and_does_not_block_the_name(
        workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 F8: a failure after the copy (here: registering) must not leave an
    unlisted file behind that blocks the name and that nothing can remove."""
    source = write_tiny_gguf(tmp_path / "m.gguf")
    lib = workspace.library
    real_insert = lib._insert

    def failing_insert(*args, **kwargs):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(lib, "_insert", failing_insert)
    with pytest.raises((LibraryError, OSError)):
        lib.import_file(source)
    assert list(workspace.home.models.iterdir()) == []
    monkeypatch.setattr(lib, "_insert", real_insert)
    record = lib.import_file(source)
    assert record.name == "m"
    assert [p.name for p in workspace.home.models.iterdir()] == [record.path.name]


def test_an_orphan_file_in_models_does_not_block_an_import(workspace: Workspace,
                                                           tmp_path: Path) -> None:
    """Issue 11 F8: a file left in ``models/`` by a crash (not in the library) must not
    make every later import of that name fail."""
    source = write_tiny_gguf(tmp_path / "m.gguf")
    orphan = workspace.home.models / "m.gguf"
    orphan.write_bytes(b"left by a crash")
    record = workspace.library.import_file(source)
    assert _sha(record.path) == _sha(source)
    assert orphan.read_bytes() == b"left by a crash"  # not ours to delete


def test_a_stored_record_with_infinite_or_text_numbers_still_lists_and_fits(
        workspace: Workspace, tmp_path: Path) -> None:
    """Issue 11 F9: a record stored with ``+inf`` (or a string) in its shape broke the
    Models tab and ``models fit`` at every start; such values now read as unknown."""
    import json

    from app.models.memory_fit import verdict_for

    source = write_tiny_gguf(tmp_path / "m.gguf")
    record = workspace.library.import_file(source)
    info = dict(record.info.to_json(), n_embd=float("inf"), n_layers="many",
                context_length=-1, n_head=2.0, architecture=7)
    workspace.library.conn.execute("UPDATE models SET info = ? WHERE name = ?",
                                   (json.dumps(info), record.name))
    stored = workspace.library.get(record.name)
    assert stored.info.n_embd is None and stored.info.n_layers is None
    assert stored.info.context_length is None and stored.info.n_head == 2
    assert stored.info.architecture == "unknown"  # not a name: the default
    verdict = verdict_for(stored.info, 512)
    assert verdict.level
